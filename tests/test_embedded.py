"""The embedded PostgreSQL: cold and warm start, sharing, reuse after a kill, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omninode_bridge.embedded import (
    default_data_dir,
    embedded_status,
    start_embedded,
    stop_embedded,
)
from omninode_bridge.services import PostgresClient
from tests.support import base_settings, clean_env

pytestmark = pytest.mark.embedded

_START_AND_PRINT_PID = """
import asyncio, sys
from pathlib import Path
from omninode_bridge.embedded import start_embedded
server = asyncio.run(start_embedded(Path(sys.argv[1])))
print(server.pid, flush=True)
if len(sys.argv) > 2:
    import time; time.sleep(600)
"""


def _start_in_subprocess(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _START_AND_PRINT_PID, str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def test_root_default_data_dir_needs_no_widening() -> None:
    path = default_data_dir()
    if os.geteuid() == 0:
        assert path == Path("/var/lib/omninode-bridge")
    assert not str(path).startswith("/root")


async def test_cold_then_warm_start_through_postgres_client(
    temp_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "POSTGRES_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOOLREG_DATA_DIR", str(temp_data_dir))
    started = time.perf_counter()
    async with PostgresClient() as client:
        cold = time.perf_counter() - started
        health = await client.health_check()
        assert health["status"] == "healthy"
        assert health["server_version"].startswith("18")
        assert await client.fetchval("SELECT current_database()") == "omninode_bridge"
    first = await embedded_status(temp_data_dir)
    assert first is not None, "the server keeps running for the next process"
    # Warm: a new process finds the running server and reuses it.
    proc = _start_in_subprocess(temp_data_dir)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert int(out.strip()) == first.pid
    print(f"embedded cold start through PostgresClient: {cold:.3f}s")


def test_two_processes_starting_at_once_share_one_server(temp_data_dir: Path) -> None:
    procs = [_start_in_subprocess(temp_data_dir) for _ in range(2)]
    pids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        pids.append(int(out.strip()))
    assert pids[0] == pids[1]
    status = asyncio.run(embedded_status(temp_data_dir))
    assert status is not None
    assert status.pid == pids[0]


def test_server_of_a_killed_process_is_reused(temp_data_dir: Path) -> None:
    proc = _start_in_subprocess(temp_data_dir, "hold")
    assert proc.stdout is not None
    pid = int(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes the pipes
    assert proc.returncode == -signal.SIGKILL
    again = asyncio.run(start_embedded(temp_data_dir))
    assert again.pid == pid


async def test_stop_then_start_again(temp_data_dir: Path) -> None:
    server = await start_embedded(temp_data_dir)
    assert await stop_embedded(temp_data_dir) is True
    assert await embedded_status(temp_data_dir) is None
    assert await stop_embedded(temp_data_dir) is False
    restarted = await start_embedded(temp_data_dir)
    assert restarted.pid != server.pid


async def test_health_check_on_a_stopped_database_reports_and_recovers(temp_data_dir: Path) -> None:
    server = await start_embedded(temp_data_dir)
    settings = base_settings(pool_max_size=2, connect_timeout=3)
    async with PostgresClient(settings, dsn=server.dsn("omninode_bridge")) as client:
        assert (await client.health_check())["status"] == "healthy"
        await stop_embedded(temp_data_dir)
        report = await client.health_check()
        assert report["status"] == "unhealthy"
        assert "unavailable" in report["error"]
        await start_embedded(temp_data_dir)
        assert (await client.health_check())["status"] == "healthy"
