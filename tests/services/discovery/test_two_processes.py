"""Two processes, each with its own ToolDiscoveryService on one database, see the same changes."""

from __future__ import annotations

import asyncio
import sys

from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from tests.services.discovery.helpers import FAST, discovery_settings, register, until
from tests.services.discovery.tool_server import ToolServer
from tests.support import REPO_ROOT, clean_env

# The other process: reads commands on stdin, answers one line each.
PEER = """
import asyncio, sys, time
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import (
    PostgresClient, ToolDiscoveryService, ToolRegistrationRepository,
)
from omninode_bridge.services.discovery import DiscoveryTuning
from omninode_bridge.settings import Settings

async def main(dsn):
    settings = Settings(pool_min_size=1, pool_max_size=4)
    tuning = DiscoveryTuning(heartbeat_interval=0.1, feed_poll_interval=0.25)
    async with PostgresClient(settings, dsn=dsn) as client:
        repository = ToolRegistrationRepository(client)
        async with ToolDiscoveryService(repository, settings, tuning=tuning) as service:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            print("ready", flush=True)
            while line := (await reader.readline()).decode().split():
                command, arg = line[0], line[1]
                started = time.monotonic()
                if command in ("present", "absent"):
                    async with asyncio.timeout(2.0):
                        while (await service.discover_tool(arg) is None) != (command == "absent"):
                            await service.wait_for_update()
                    print(f"{time.monotonic() - started:.4f}", flush=True)
                elif command == "route":
                    print((await service.route_request(arg, {"from": "peer"}))["tool"], flush=True)
                elif command == "register":
                    tool_id, op, url = arg.split(",")
                    await repository.upsert_registration(ModelToolRegistrationCreate(
                        tool_id=tool_id, node_type="compute",
                        capabilities={"operations": [op]}, endpoints={op: url},
                    ))
                    print("ok", flush=True)
                elif command == "delete":
                    print(await repository.delete_registration(arg), flush=True)

asyncio.run(main(sys.argv[1]))
"""


class Peer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(10):
            answer = await self.proc.stdout.readline()
        assert answer, f"the peer died answering {line!r}"
        return answer.decode().strip()


async def test_two_processes_see_the_same_changes(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PEER,
        db_dsn,
        cwd=REPO_ROOT,
        env=clean_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    peer = Peer(proc)
    try:
        async with (
            ToolServer("shared") as tool,
            ToolDiscoveryService(repository, discovery_settings(), tuning=FAST) as service,
        ):
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                assert (await proc.stdout.readline()).decode().strip() == "ready"

            async def here(op: str, present: bool = True) -> float:
                async def check() -> bool:
                    return (await service.discover_tool(op) is not None) == present

                return await until(service, check, 2.0)

            # This process registers; the peer sees it, and routes to the same real tool.
            await register(repository, "ours", tool.url(), ("op-ours",))
            assert float(await peer.ask("present op-ours")) < 2.0
            assert await peer.ask("route op-ours") == "shared"
            assert ("/op-ours", {"from": "peer"}) in tool.requests
            await here("op-ours")

            # The peer registers; this process sees it.
            assert await peer.ask(f"register theirs,op-theirs,{tool.url('/theirs')}") == "ok"
            assert await here("op-theirs") < 2.0
            assert (await service.route_request("op-theirs", {}))["path"] == "/theirs"

            # Deletions, both ways.
            await repository.delete_registration("theirs")
            assert float(await peer.ask("absent op-theirs")) < 2.0
            assert await peer.ask("delete ours") == "True"
            assert await here("op-ours", present=False) < 2.0
            assert len(service.index) == 0
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the peer's loop ends on EOF
        try:
            async with asyncio.timeout(10):
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert code == 0
