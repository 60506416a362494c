"""Checks scheduled per tool in a real server: hanging tools delay no one, stale ones rest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from omninode_bridge.liveness import LEASE_NAME, Fence, HealthChecker
from omninode_bridge.liveness.scheduler import CheckScheduler
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.sql import load_queries
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import register
from tests.liveness.servers import spawn, stop

INTERVAL = 0.5
TIMEOUT = 0.5
FAIL_THRESHOLD = 3
SLACK = 1.0  # a loaded 2-core machine
ENV = {
    "TOOLREG_CHECK_INTERVAL_SECONDS": str(INTERVAL),
    "TOOLREG_CHECK_TIMEOUT_SECONDS": str(TIMEOUT),
    "TOOLREG_CHECK_CONCURRENCY": "20",
    "TOOLREG_REAP_INTERVAL_SECONDS": "5",
    "TOOLREG_POOL_MIN_SIZE": "1",
    "TOOLREG_POOL_MAX_SIZE": "5",
}


async def status_of(client: PostgresClient, tool_id: str) -> str | None:
    value = await client.fetchval(
        "SELECT check_status FROM tool_health WHERE tool_id = $1", tool_id
    )
    return str(value) if value is not None else None


async def wait_for(what: str, timeout: float, predicate: object) -> float:
    """Poll the async ``predicate`` every 20 ms; the seconds it took."""
    assert callable(predicate)
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout}s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_hanging_tools_do_not_delay_detecting_a_failing_one(
    db_dsn: str,
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    tmp_path: Path,
) -> None:
    """100 health endpoints hang (5 times the concurrency); an unrelated tool then fails.

    Takes about 10 s. With one pass waiting for its slowest probe, each pass
    took 100 / 20 * 0.5 s = 2.5 s and detection about 7.5 s.
    """
    hanging = 100
    for i in range(hanging):
        health_server.answer(f"/hang/{i}", delay=60)
        await register(repository, f"hang-{i:03}", health=health_server.url(f"/hang/{i}"))
    await register(repository, "target", health=health_server.url("/target"))
    server = spawn(db_dsn, tmp_path / "server.log", ENV)
    try:

        async def every_hanging_tool_probed() -> bool:
            return all(health_server.hits[f"/hang/{i}"] >= 1 for i in range(hanging))

        await wait_for("every hanging tool probed once", 30, every_hanging_tool_probed)
        await asyncio.sleep(2 * INTERVAL)
        assert await status_of(postgres_client, "target") == "passing"

        health_server.answer("/target", 500)

        async def target_critical() -> bool:
            return await status_of(postgres_client, "target") == "critical"

        took = await wait_for("the target to turn critical", 30, target_critical)
    finally:
        stop(server)
    print(f"\nfailing tool detected in {took:.2f}s beside {hanging} hanging tools")
    assert took < FAIL_THRESHOLD * INTERVAL + TIMEOUT + SLACK


async def test_stale_tools_are_not_probed_until_a_heartbeat_returns(
    db_dsn: str,
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    tmp_path: Path,
) -> None:
    """A tool whose heartbeat is past the TTL is unroutable anyway: no probes. About 6 s."""
    ttl = 60.0  # "live" must stay within it however slowly a loaded machine starts the server
    await register(repository, "live", health=health_server.url("/live"))
    await register(repository, "gone", health=health_server.url("/gone"))
    past = datetime.now(UTC) - timedelta(seconds=10 * ttl)
    assert await repository.update_heartbeat("gone", past)
    env = {**ENV, "TOOLREG_TTL_SECONDS": str(ttl), "TOOLREG_RETENTION_SECONDS": "3600"}
    server = spawn(db_dsn, tmp_path / "server.log", env)
    try:

        async def live_checked_often() -> bool:
            return health_server.hits["/live"] >= 4

        await wait_for("the live tool's checks", 20, live_checked_often)
        assert health_server.hits["/gone"] == 0

        assert await repository.update_heartbeat("gone")

        async def gone_checked() -> bool:
            return health_server.hits["/gone"] >= 1

        await wait_for("the returning tool's first check", 5 * INTERVAL + SLACK, gone_checked)
    finally:
        stop(server)


async def test_the_tools_are_read_in_pages_and_a_deleted_one_is_dropped(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler reads its tools a page at a time (pages of 2 here): every tool of
    every page is checked, and a tool deleted meanwhile leaves the schedule at the next
    reload (the tools seen are gathered over all pages). In-process, about 2 s."""
    monkeypatch.setattr("omninode_bridge.liveness.scheduler.SCHEDULE_PAGE", 2)
    ids = [f"paged-{i}" for i in range(5)]
    for tool_id in ids:
        await register(repository, tool_id, health=health_server.url(f"/{tool_id}"))
    await register(repository, "no-endpoint")  # never a target
    generation = await postgres_client.fetchval(
        load_queries("liveness.sql")["lease_acquire"], LEASE_NAME, "test", 60.0, None, 0
    )
    scheduler = CheckScheduler(make_checker(check_interval_seconds=INTERVAL))
    running = asyncio.create_task(scheduler.run(Fence(int(generation))))
    try:

        async def every_tool_checked_twice() -> bool:
            return all(health_server.hits[f"/{t}"] >= 2 for t in ids)

        await wait_for("every tool's checks", 10, every_tool_checked_twice)
        assert sorted(scheduler._targets) == ids
        assert await repository.delete_registration("paged-2")

        async def dropped() -> bool:
            return "paged-2" not in scheduler._targets

        await wait_for("the deleted tool to leave the schedule", 5, dropped)
        assert sorted(scheduler._targets) == [t for t in ids if t != "paged-2"]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
