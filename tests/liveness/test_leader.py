"""Leader election by lease (and advisory lock), in one process: one leader, takeover, step-down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from omninode_bridge.liveness import (
    LEASE_NAME,
    LIVENESS_LOCK_KEY,
    Fence,
    LeaderElection,
    LivenessMetrics,
    LivenessRunner,
)
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import liveness_settings, register
from tests.support import connection

INTERVAL = 0.3


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 10 ms; the seconds it took, or fail after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


class Candidate:
    """A LeaderElection in a task of its own, recording the fences it led with."""

    def __init__(self, dsn: str, name: str) -> None:
        self.name = name
        self.metrics = LivenessMetrics(CollectorRegistry())
        self.election = LeaderElection(
            dsn, interval=INTERVAL, lease=3 * INTERVAL, connect_timeout=5, metrics=self.metrics
        )
        self.terms: list[Fence] = []
        self.cancelled = 0
        self.task = asyncio.create_task(self.election.run(self._lead))

    async def _lead(self, fence: Fence) -> None:
        self.terms.append(fence)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def candidates(db_dsn: str) -> AsyncIterator[list[Candidate]]:
    running = [Candidate(db_dsn, "one"), Candidate(db_dsn, "two")]
    try:
        yield running
    finally:
        for candidate in running:
            await candidate.stop()


async def lock_holders(dsn: str) -> list[int]:
    async with connection(dsn, timeout=5) as conn:
        rows = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND ((classid::bigint << 32) | objid::bigint) = $1",
            LIVENESS_LOCK_KEY,
        )
    return [r["pid"] for r in rows]


async def lease_row(dsn: str) -> asyncpg.Record:
    async with connection(dsn, timeout=5) as conn:
        row = await conn.fetchrow(
            "SELECT generation, holder_pid, expires_at > clock_timestamp() AS held "
            "FROM liveness_leases WHERE name = $1",
            LEASE_NAME,
        )
    assert row is not None
    return row


async def test_one_leader_and_takeover_when_it_stops(
    candidates: list[Candidate], db_dsn: str
) -> None:
    await wait_for(lambda: any(c.election.is_leader for c in candidates), 10, "a leader")
    await asyncio.sleep(3 * INTERVAL)  # the other keeps waiting, never leads
    leaders = [c for c in candidates if c.election.is_leader]
    assert len(leaders) == 1
    (leader,) = leaders
    (other,) = [c for c in candidates if c is not leader]
    assert other.terms == []
    lease = await lease_row(db_dsn)
    assert lease["held"] and lease["generation"] == leader.terms[0].generation
    # One session holds the lock. The leader is that session, or (a start-up race on a
    # loaded machine: the lock's holder had not yet written the lease when the other's
    # lock wait ran out) the other, leading by lease alone while the holder waits behind it.
    (holder,) = await lock_holders(db_dsn)
    assert lease["holder_pid"] in (holder, None)
    assert leader.metrics.leader._value.get() == 1 and other.metrics.leader._value.get() == 0

    await leader.stop()
    took = await wait_for(lambda: other.election.is_leader, 5, "the takeover")
    assert took < INTERVAL + 0.5  # the waiter is granted the lock as soon as it is freed
    assert leader.cancelled == 1 and leader.metrics.leader._value.get() == 0
    lease = await lease_row(db_dsn)
    assert lease["generation"] == other.terms[0].generation == leader.terms[0].generation + 1
    assert await lock_holders(db_dsn) == [lease["holder_pid"]]


async def test_a_leader_whose_session_is_killed_steps_down(
    candidates: list[Candidate], db_dsn: str
) -> None:
    await wait_for(lambda: any(c.election.is_leader for c in candidates), 10, "a leader")
    (leader,) = [c for c in candidates if c.election.is_leader]
    fence = leader.election.fence
    assert fence is not None
    pid = (await lease_row(db_dsn))["holder_pid"]
    async with connection(db_dsn, timeout=5) as admin:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    await wait_for(lambda: leader.cancelled == 1, 5, "the old leader to stop its work")
    await wait_for(
        lambda: any(c.election.is_leader for c in candidates), 5, "a new leadership term"
    )
    leading = [c for c in candidates if c.election.is_leader]
    assert len(leading) == 1
    assert leading[0].election.fence != fence
    assert pid not in await lock_holders(db_dsn)
    assert (await lease_row(db_dsn))["generation"] == fence.generation + 1


async def test_a_leader_whose_renewal_fails_past_its_lease_is_deposed(
    candidates: list[Candidate], db_dsn: str
) -> None:
    """The leader's backend stalls (SIGSTOP): the renewal times out after the lease ran
    out, which is a deposition (logged and counted as one), not only an outage; the other
    candidate takes over meanwhile. A frozen leader process waking up meets the same."""
    await wait_for(lambda: any(c.election.is_leader for c in candidates), 10, "a leader")
    (leader,) = [c for c in candidates if c.election.is_leader]
    (other,) = [c for c in candidates if c is not leader]
    pid = (await lease_row(db_dsn))["holder_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        await wait_for(lambda: leader.cancelled == 1, 10, "the stalled leader to stop its work")
        await wait_for(lambda: other.election.is_leader, 10, "the other to take over")
        assert leader.metrics.deposed._value.get() == 1
    finally:
        os.kill(pid, signal.SIGCONT)


def runner_settings(**overrides: object) -> Settings:
    return liveness_settings(
        ttl_seconds=60,
        retention_seconds=600,
        reap_interval_seconds=0.2,
        check_interval_seconds=0.2,
        **overrides,
    )


async def test_the_runner_reaps_and_checks_while_leading(
    postgres_client: PostgresClient,
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
) -> None:
    for i in range(3):
        await register(repository, f"fresh-{i}")
    await register(repository, "dead", heartbeat_age=3600)
    await register(repository, "sick", health=health_server.url("/sick"))
    health_server.answer("/sick", 500)
    registry = CollectorRegistry()
    runner = LivenessRunner(postgres_client, repository, runner_settings(), registry)
    await runner.start()
    try:
        await wait_for(lambda: runner.is_leader, 10, "leadership")

        async def settled() -> bool:
            return await repository.get_registration("dead") is None and (
                await postgres_client.fetchval(
                    "SELECT check_status FROM tool_health WHERE tool_id = 'sick'"
                )
                == "critical"
            )

        deadline = time.monotonic() + 10
        while not await settled():
            assert time.monotonic() < deadline, "the runner did not reap and check in 10 s"
            await asyncio.sleep(0.05)
        assert registry.get_sample_value("toolreg_liveness_leader") == 1
        assert registry.get_sample_value("toolreg_reaper_removed_tools_total") == 1
        assert registry.get_sample_value("toolreg_liveness_passes_total", {"kind": "reap"})
    finally:
        await runner.aclose()
    assert registry.get_sample_value("toolreg_liveness_leader") is None  # unregistered
    again = LivenessRunner(postgres_client, repository, runner_settings(), registry)
    await again.aclose()  # the same registry takes a new runner's metrics
