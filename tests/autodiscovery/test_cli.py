"""``toolreg autodiscover etcd`` as a real process, with etcdctl as a user types it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from omninode_bridge.autodiscovery.bridge import EPOCH
from omninode_bridge.services import ToolRegistrationRepository
from tests.autodiscovery.etcd_server import ETCDCTL_BINARY, EtcdServer, free_port
from tests.autodiscovery.helpers import WAIT, registration_value, wait_until
from tests.support import TOOLREG, clean_env, run_cli


class BridgeProcess:
    """``toolreg autodiscover etcd ...`` running; ``ready()`` waits for its "following" line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(
        cls, *args: str, env: dict[str, str], track: list[BridgeProcess]
    ) -> BridgeProcess:
        """Start it (``track`` gets it at once, for cleanup) and wait until it follows etcd."""
        process = await asyncio.create_subprocess_exec(
            TOOLREG, "autodiscover", "etcd", *args,
            env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        bridge = cls(process)
        track.append(bridge)
        await bridge.wait_for_line("following etcd")
        return bridge

    async def wait_for_line(self, text: str) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"exited before {text!r}: {self.lines}")
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                if text in line:
                    return line

    async def finish(self) -> tuple[int, str]:
        """Wait (bounded) for it to exit; its exit code and the rest of its output."""
        async with asyncio.timeout(WAIT):
            rest, _ = await self.process.communicate()
        self.lines.extend(rest.decode(errors="replace").splitlines())
        assert self.process.returncode is not None
        return self.process.returncode, "\n".join(self.lines)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.finish()  # reaps it and closes its pipe


@pytest.fixture
async def processes() -> AsyncIterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    try:
        yield started
    finally:
        for bridge in started:
            await bridge.kill()


async def etcdctl(etcd: EtcdServer, *args: str) -> str:
    """Run etcdctl (v3 API) against the test's etcd; its output."""
    process = await asyncio.create_subprocess_exec(
        ETCDCTL_BINARY, f"--endpoints={etcd.url}", *args,
        env=clean_env(ETCDCTL_API="3"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(WAIT):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def _tools(repository: ToolRegistrationRepository) -> set[str]:
    return {t.tool_id for t in await repository.list_all_registrations()}


async def _until_tools(repository: ToolRegistrationRepository, expected: set[str]) -> None:
    async def matches() -> bool:
        return await _tools(repository) == expected

    await wait_until(matches)


async def test_a_killed_bridge_restarted_misses_no_change_made_while_it_was_down(
    etcd: EtcdServer,
    db_dsn: str,
    prefix: str,
    repository: ToolRegistrationRepository,
    processes: list[BridgeProcess],
) -> None:
    # Settings from the environment the first time ...
    env = clean_env(
        DATABASE_URL=db_dsn, TOOLREG_ETCD_ENDPOINTS=etcd.url, TOOLREG_ETCD_PREFIX=prefix
    )
    first = await BridgeProcess.start(env=env, track=processes)
    granted = await etcdctl(etcd, "lease", "grant", "60")  # "lease 694d... granted with TTL(60s)"
    lease = granted.split()[1]
    for tool_id in ("search-1", "search-2", "search-3"):
        value = registration_value(tool_id).decode()
        await etcdctl(etcd, "put", f"--lease={lease}", f"{prefix}{tool_id}", value)
    await _until_tools(repository, {"search-1", "search-2", "search-3"})
    search_1 = await repository.get_registration("search-1")

    first.process.send_signal(signal.SIGKILL)
    code, _ = await first.finish()
    assert code == -signal.SIGKILL
    await etcdctl(etcd, "del", f"{prefix}search-2")
    await etcdctl(etcd, "put", f"{prefix}calc-1", registration_value("calc-1").decode())
    await etcdctl(
        etcd, "put", f"{prefix}search-3", registration_value("search-3", metadata={"v": 2}).decode()
    )

    # ... and from flags the second time.
    second = await BridgeProcess.start(
        "--endpoints", etcd.url, "--prefix", prefix, env=clean_env(DATABASE_URL=db_dsn),
        track=processes,
    )  # fmt: skip
    await _until_tools(repository, {"search-1", "search-3", "calc-1"})
    again = await repository.get_registration("search-1")
    assert again is not None and search_1 is not None
    # The same row, unchanged (the resync refreshed only its heartbeat).
    assert again.model_dump(exclude={"last_heartbeat"}) == search_1.model_dump(
        exclude={"last_heartbeat"}
    )
    assert (await repository.get_registration("search-3")).metadata == {"v": 2}  # type: ignore[union-attr]
    await etcdctl(etcd, "lease", "revoke", lease)  # search-3 was put again without it
    await _until_tools(repository, {"search-3", "calc-1"})
    listed = run_cli("tools", "list", "--json", env=clean_env(DATABASE_URL=db_dsn), timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted(t["tool_id"] for t in orjson.loads(listed.stdout)) == ["calc-1", "search-3"]

    second.process.send_signal(signal.SIGTERM)
    code, output = await second.finish()
    assert code == 0, output
    assert "stopped" in output
    assert "etcd lease expired" in output or "removed tool 'search-1'" in output


async def test_metrics_invalid_values_and_mark_stale_from_the_command_line(
    etcd: EtcdServer,
    db_dsn: str,
    prefix: str,
    repository: ToolRegistrationRepository,
    processes: list[BridgeProcess],
) -> None:
    port = free_port()
    bridge = await BridgeProcess.start(
        "--endpoints", etcd.url, "--prefix", prefix, "--mark-stale", "--metrics-port", str(port),
        env=clean_env(DATABASE_URL=db_dsn), track=processes,
    )  # fmt: skip
    await etcdctl(etcd, "put", f"{prefix}broken", '{"node_type": "effect", "endpoints": 7}')
    await etcdctl(etcd, "put", f"{prefix}fine", registration_value("fine").decode())
    await _until_tools(repository, {"fine"})
    await bridge.wait_for_line(f"skipped key {prefix}broken: invalid registration: endpoints:")
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    sample = f'invalid_values_total{{field="endpoints",source="etcd:{prefix}"}} 1.0'
    assert f"toolreg_autodiscovery_{sample}" in text
    await etcdctl(etcd, "del", f"{prefix}fine")

    async def stale() -> bool:
        tool = await repository.get_registration("fine")
        return tool is not None and tool.last_heartbeat == EPOCH

    await wait_until(stale)


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        ((), {}, "TOOLREG_ETCD_ENDPOINTS"),
        (("--endpoints", "https://127.0.0.1:2379"), {}, "--endpoints: https:// (TLS)"),
        ((), {"TOOLREG_ETCD_ENDPOINTS": "http://u:pw@127.0.0.1:2379"}, "credentials"),
        (("--endpoints", "http://127.0.0.1:1", "--log-level", "loud"), {}, "--log-level"),
    ],
)
def test_bad_configuration_is_one_line_naming_it(
    args: tuple[str, ...], extra_env: dict[str, str], message: str
) -> None:
    result = run_cli("autodiscover", "etcd", *args, env=clean_env(**extra_env), timeout=30)
    assert result.returncode == 1
    assert message in result.stderr
    assert "pw@" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_without_the_schema_is_refused(empty_db_dsn: str) -> None:
    result = run_cli(
        "autodiscover", "etcd", "--endpoints", "http://127.0.0.1:1",
        env=clean_env(DATABASE_URL=empty_db_dsn), timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "toolreg db upgrade" in result.stderr


def test_the_command_is_listed() -> None:
    result = subprocess.run(
        [TOOLREG, "autodiscover", "--help"], env=clean_env(), capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "etcd" in result.stdout
