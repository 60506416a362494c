"""Leadership is a lease: a frozen leader (SIGSTOP) loses it, and steps down when it wakes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import register
from tests.liveness.servers import ServerProcess, leader_gauge, parse_log, spawn, stop

INTERVAL = 0.5
LEASE = 1.5
SLACK = 1.0  # a busy 2-core machine running three servers and PostgreSQL
ENV = {
    "TOOLREG_REAP_INTERVAL_SECONDS": str(INTERVAL),
    "TOOLREG_CHECK_INTERVAL_SECONDS": str(INTERVAL),
    "TOOLREG_CHECK_TIMEOUT_SECONDS": "0.5",
    "TOOLREG_LEADER_LEASE_SECONDS": str(LEASE),
    "TOOLREG_POOL_MIN_SIZE": "1",
    "TOOLREG_POOL_MAX_SIZE": "5",
}


async def gauges(http: httpx.AsyncClient, servers: list[ServerProcess]) -> list[float | None]:
    return list(await asyncio.gather(*(leader_gauge(http, s) for s in servers)))


async def single_leader(
    http: httpx.AsyncClient, servers: list[ServerProcess], timeout: float
) -> ServerProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = await gauges(http, servers)
        if seen.count(1.0) == 1 and seen.count(0.0) == len(servers) - 1:
            return servers[seen.index(1.0)]
        await asyncio.sleep(0.05)
    pytest.fail(f"no single leader within {timeout}s: {await gauges(http, servers)}")


async def check_status(client: PostgresClient, tool_id: str) -> str | None:
    value = await client.fetchval(
        "SELECT check_status FROM tool_health WHERE tool_id = $1", tool_id
    )
    return str(value) if value is not None else None


async def test_a_frozen_leader_loses_the_lease_and_steps_down_when_it_wakes(
    db_dsn: str,
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    tmp_path: Path,
) -> None:
    """Three replicas; SIGSTOP the leader. Takes about 12 s (three servers start)."""
    await register(repository, "svc", health=health_server.url("/svc"))
    servers = [spawn(db_dsn, tmp_path / f"server-{i}.log", ENV) for i in range(3)]
    frozen: ServerProcess | None = None
    try:
        async with httpx.AsyncClient() as http:
            frozen = await single_leader(http, servers, timeout=15)
            others = [s for s in servers if s is not frozen]
            await asyncio.sleep(2 * INTERVAL)  # a few passes under the first leader
            hits = health_server.hits["/svc"]
            assert hits > 0, "the first leader never checked"

            stopped_at = time.time()
            os.kill(frozen.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 15
            while (await gauges(http, others)).count(1.0) != 1:
                assert time.monotonic() < deadline, "no replica took over from a frozen leader"
                await asyncio.sleep(0.02)
            seen_after = time.time() - stopped_at
            (successor,) = [
                s for s, g in zip(others, await gauges(http, others), strict=True) if g == 1.0
            ]

            # The new leader checks: a failing tool goes critical (3 failures at 0.5 s).
            health_server.answer("/svc", 500)
            deadline = time.monotonic() + 10
            while await check_status(postgres_client, "svc") != "critical":
                assert time.monotonic() < deadline, "the new leader never checked the tool"
                await asyncio.sleep(0.05)

            resumed_at = time.time()
            os.kill(frozen.pid, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while await leader_gauge(http, frozen) != 0.0:
                assert time.monotonic() < deadline, "the woken leader did not step down"
                await asyncio.sleep(0.02)
            assert await single_leader(http, servers, timeout=5) is successor
            await asyncio.sleep(3 * INTERVAL)
            assert await single_leader(http, servers, timeout=5) is successor
    finally:
        if frozen is not None:
            os.kill(frozen.pid, signal.SIGCONT)
        for server in servers:
            stop(server)

    _, elected = parse_log(successor.log)
    took_over = [t for t in elected if t > stopped_at]
    assert took_over, successor.log.read_text()
    takeover = took_over[0] - stopped_at
    print(f"\ntakeover after SIGSTOP: {takeover * 1000:.0f} ms (seen {seen_after * 1000:.0f} ms)")
    assert takeover < LEASE + INTERVAL + SLACK
    frozen_passes, _ = parse_log(frozen.log)
    woke_and_worked = [p for p in frozen_passes if p.start >= resumed_at]
    assert woke_and_worked == [], "the deposed leader began passes after it woke"
    assert "deposed" in frozen.log.read_text()
