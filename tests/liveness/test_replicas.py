"""Two real server processes on one database: one leader; SIGKILL it and the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from omninode_bridge.services import ToolRegistrationRepository
from tests.liveness.helpers import register
from tests.liveness.servers import Pass, ServerProcess, leader_gauge, parse_log, spawn, stop

INTERVAL = 0.5
RELEASE_SLACK = 1.0  # the killed backend must notice its client is gone
ENV = {
    "TOOLREG_REAP_INTERVAL_SECONDS": str(INTERVAL),
    "TOOLREG_CHECK_INTERVAL_SECONDS": str(INTERVAL),
    "TOOLREG_POOL_MIN_SIZE": "1",
    "TOOLREG_POOL_MAX_SIZE": "5",
}


async def until_one_leader(
    http: httpx.AsyncClient, servers: list[ServerProcess], timeout: float
) -> ServerProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gauges = [await leader_gauge(http, s) for s in servers]
        if sorted(g or 0 for g in gauges) == [0.0, 1.0]:
            return servers[gauges.index(1.0)]
        assert gauges.count(1.0) <= 1, f"two leaders at once: {gauges}"
        await asyncio.sleep(0.05)
    pytest.fail(f"no single leader within {timeout}s")


def overlapping(a: list[Pass], b: list[Pass], killed_at: float) -> list[tuple[Pass, Pass]]:
    """Pairs of passes of the same kind, one from each list, that ran at the same time."""
    found = []
    for x in a:
        for y in b:
            if x.kind != y.kind:
                continue
            x_end = x.end if x.end is not None else killed_at
            y_end = y.end if y.end is not None else killed_at
            if x.start < y_end and y.start < x_end:
                found.append((x, y))
    return found


async def test_sigkill_the_leader_and_the_other_takes_over(
    db_dsn: str, repository: ToolRegistrationRepository, tmp_path: Path
) -> None:
    servers = [spawn(db_dsn, tmp_path / f"server-{i}.log", ENV) for i in range(2)]
    try:
        async with httpx.AsyncClient() as http:
            leader = await until_one_leader(http, servers, timeout=15)
            (survivor,) = [s for s in servers if s is not leader]
            await asyncio.sleep(3 * INTERVAL)  # a few passes under the first leader

            killed_at = time.time()
            os.kill(leader.pid, signal.SIGKILL)
            leader.process.wait(timeout=10)
            deadline = time.monotonic() + 10
            while await leader_gauge(http, survivor) != 1.0:
                assert time.monotonic() < deadline, "the survivor never took over"
                await asyncio.sleep(0.01)
            seen_at = time.time()

            # The new leader reaps: a tool past the retention goes within an interval or two.
            for i in range(3):
                await register(repository, f"fresh-{i}")
            await register(repository, "dead", heartbeat_age=2 * 3600)
            deadline = time.monotonic() + 10 * INTERVAL
            while await repository.get_registration("dead") is not None:
                assert time.monotonic() < deadline, "the new leader did not reap"
                await asyncio.sleep(0.05)
            await asyncio.sleep(2 * INTERVAL)
    finally:
        for server in servers:
            stop(server)

    killed_passes, killed_elected = parse_log(leader.log)
    passes, elected = parse_log(survivor.log)
    took_over = [t for t in elected if t > killed_at]
    assert killed_elected and took_over, (leader.log.read_text(), survivor.log.read_text())
    takeover = took_over[0] - killed_at
    print(
        f"\ntakeover after SIGKILL: {takeover * 1000:.1f} ms (seen on /metrics after "
        f"{(seen_at - killed_at) * 1000:.1f} ms)"
    )
    assert takeover < INTERVAL + RELEASE_SLACK
    assert [p for p in killed_passes if p.kind == "reap"], "the first leader never reaped"
    survivor_reaps = [p for p in passes if p.kind == "reap"]
    assert len(survivor_reaps) >= 3
    assert all(p.start >= took_over[0] for p in passes)  # only passes as leader
    assert overlapping(killed_passes, passes, killed_at) == []
