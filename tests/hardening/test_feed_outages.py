"""The live change feed survives database outages: streams end, then resume gap-free.

During an outage under load, asyncpg once raised ``InternalClientError`` from
the hub's follower, which ended without a log line: open streams stayed
silent and new ones got nothing until a restart (about one outage in three).
This stops the embedded PostgreSQL for real, ten times, under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx
import orjson
import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from tests.support import bearer, start_server, terminate, tool_body

pytestmark = pytest.mark.embedded

OUTAGES = 10  # a one-in-three failure survives ten tries with probability 1.7%
WAIT = 20.0


class Follower:
    """An SSE client that reconnects with Last-Event-ID, as a browser's EventSource does."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.cursors: list[str] = []
        self.tool_ids: list[str] = []
        self.ended = 0  # streams that the server ended
        self.changed = asyncio.Event()

    async def run(self) -> None:
        last = "0-0"
        while True:
            try:
                async with self.http.stream(
                    "GET", "/v1/changes", headers={"Last-Event-ID": last}
                ) as response:
                    if response.status_code != 200:
                        await asyncio.sleep(0.1)
                        continue
                    cursor = None
                    async for line in response.aiter_lines():
                        if line.startswith("id: "):
                            cursor = line[4:]
                        elif line.startswith("data: ") and cursor is not None:
                            self.cursors.append(cursor)
                            self.tool_ids.append(orjson.loads(line[6:])["tool_id"])
                            last, cursor = cursor, None
                            self.changed.set()
                self.ended += 1
                self.changed.set()
            except httpx.TransportError:
                await asyncio.sleep(0.1)

    async def until(self, condition: str, predicate: object) -> None:
        assert callable(predicate)
        async with asyncio.timeout(WAIT):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def _load(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """Reads and searches in a loop, so that the outage lands mid-query."""
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.gather(
                http.get("/v1/tools", params={"limit": 50}),
                http.post("/v1/tools/search", json={"capabilities": {"operations": ["stamp"]}}),
                http.get("/v1/tools/t-0"),
            )
        await asyncio.sleep(0.005)


async def _wait_ready(http: httpx.AsyncClient, ready: bool) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            with contextlib.suppress(httpx.TransportError):
                response = await http.get("/ready")
                if (response.status_code == 200) is ready:
                    return
            await asyncio.sleep(0.05)


async def test_streams_end_on_every_outage_and_resume_without_gaps(temp_data_dir: Path) -> None:
    embedded = await start_embedded(temp_data_dir)
    dsn = embedded.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    server = start_server(
        dsn,
        env={"TOOLREG_CONNECT_TIMEOUT": "2", "TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS": "2"},
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        token = bearer(await server.token("write"))
        async with (
            httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
            httpx.AsyncClient(base_url=server.base_url, timeout=30) as sse,
            httpx.AsyncClient(base_url=server.base_url, timeout=5) as load,
        ):
            follower = Follower(sse)
            tasks = [
                asyncio.create_task(follower.run()),
                asyncio.create_task(_load(load, stop)),
            ]
            created: list[str] = []
            for outage in range(OUTAGES + 1):
                tool_id = f"t-{outage}"
                response = await http.put(
                    f"/v1/tools/{tool_id}", json=tool_body(tool_id), headers=token
                )
                assert response.status_code == 201, response.text
                created.append(tool_id)
                count = len(created)
                await follower.until("delivered", lambda n=count: len(follower.tool_ids) >= n)
                if outage == OUTAGES:
                    break
                ended = follower.ended
                await stop_embedded(temp_data_dir)
                # The open stream is ended, not left silent with keepalives.
                await follower.until("ended", lambda e=ended: follower.ended > e)
                await _wait_ready(http, ready=False)
                await start_embedded(temp_data_dir)
                await _wait_ready(http, ready=True)
            await asyncio.sleep(0.5)  # anything repeated would arrive now
            assert follower.tool_ids == created  # every event exactly once, in order
            assert len(set(follower.cursors)) == len(created)
            metrics = (await http.get("/metrics")).text
            assert "toolreg_change_feed_following 1.0" in metrics
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        code = terminate(server.process)
        log = server.output()
        server.log.close()
        assert code in (0, -signal.SIGTERM), log[-5000:]
