"""Failover on Patroni: real etcd, two PostgreSQL 15 nodes, two ``toolreg serve`` replicas.

Each phase runs a writer load through both replicas (creates, updates,
heartbeats, deletes) and an SSE client that resumes with ``Last-Event-ID`` on the
other replica whenever its stream ends, injects a fault, and then checks that
every acknowledged write is in the database with its content, that the feed
delivered every acknowledged change exactly once and in order, that every
replica's discovery agrees with the database, and that the liveness leader was
one process at a time (terms and passes never overlap, every lease generation
elected once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from omninode_bridge.liveness import LEASE_NAME
from omninode_bridge.liveness.leader import LeadershipLostError, fenced_ids
from omninode_bridge.services.sql import load_queries
from tests.ha.checks import check_one_leader
from tests.ha.cluster import HaCluster
from tests.ha.scenario import Phase, lease_generation, run_phase
from tests.liveness.servers import ServerProcess
from tests.support import connection

pytestmark = pytest.mark.ha

# Patroni's ttl is 8 s: a lost primary is replaced 8-9 s after its last renewal.
NODE_LOSS_UNAVAILABLE_MAX = 20.0
SWITCHOVER_UNAVAILABLE_MAX = 10.0
RESTART_UNAVAILABLE_MAX = 15.0
LIVENESS_SQL = load_queries("liveness.sql")
CONVERGENCE_MAX = 1.5  # the target is 1 s; the feed reconnects within 0.5 s of the database


def report(phase: Phase) -> str:
    unavailable = f"{phase.unavailable:.2f}s" if phase.unavailable is not None else "none"
    elected = f"{phase.reelected_after:.2f}s" if phase.reelected_after is not None else "-"
    return (
        f"\n{phase.name}: writes unavailable {unavailable}, probe acknowledged "
        f"{phase.probe_acked_after:.2f}s after the fault, discovery converged "
        f"{phase.convergence * 1000:.0f} ms later, leader elected {elected} after the fault; "
        f"{phase.acknowledged} writes acknowledged, {phase.uncertain} uncertain "
        f"({dict(phase.statuses)}), {phase.events} events"
    )


async def clean_phase(
    name: str,
    cluster: HaCluster,
    replicas: list[ServerProcess],
    token: str,
    fault: Callable[[], Awaitable[object]],
    **options: Any,
) -> Phase:
    """:func:`run_phase` on ``cluster`` through ``replicas`` (``options`` as its own),
    printed, and asserted free of problems."""
    urls = [r.base_url for r in replicas]
    logs = [r.log for r in replicas]
    phase = await run_phase(name, cluster.dsn, urls, logs, token, fault, **options)
    print(report(phase))
    assert phase.all_problems() == [], report(phase)
    return phase


async def assert_fenced_out(dsn: str, generation: int) -> None:
    """A write of a leader of ``generation`` takes no effect on the current primary."""
    async with connection(dsn, timeout=10) as conn:
        row = await conn.fetchrow(LIVENESS_SQL["mark_stale"], 300.0, generation, LEASE_NAME)
    with pytest.raises(LeadershipLostError):
        fenced_ids(row, "a pass of the deposed leader")


def assert_outage_reported(phase: Phase) -> None:
    """While the database was away every replica said so and kept discovery going."""
    monitor = phase.monitor
    assert monitor is not None
    for url in monitor.urls:
        samples = [s for s in monitor.samples if s.url == url and s.at >= phase.fault_at]
        away = [s for s in samples if s.ready == 503 and s.detail.get("database") == "unavailable"]
        assert away, f"{url}: /ready never said the database was unavailable"
        stale = [s for s in away if s.detail.get("discovery_index") == "stale"]
        assert stale, f"{url}: /ready never said the discovery index was stale: {away}"
        # Within the grace, discovery answers from the index all along.
        assert all(s.discover == 200 for s in samples if s.discover is not None), [
            (s.at, s.discover) for s in samples
        ]
        gauges = [s.gauges for s in away if s.gauges]
        assert any(g.get("toolreg_change_feed_following") == 0.0 for g in gauges), gauges
        assert any(g.get("toolreg_discovery_index_degraded") == 1.0 for g in gauges), gauges
        assert any(g.get("toolreg_discovery_index_stale_seconds", 0) > 0 for g in gauges), gauges
        last = samples[-1]
        assert last.ready == 200 and last.detail.get("discovery_index") == "current", last


async def test_primary_lost_fails_over_then_the_old_primary_rejoins(
    healthy: HaCluster, replicas: list[ServerProcess], token: str
) -> None:
    cluster = healthy
    urls = [r.base_url for r in replicas]
    old = await cluster.the_primary()
    timeline = await cluster.timeline(old)
    assert await check_one_leader(urls, timeout=10) == []
    generation = await lease_generation(cluster.dsn)  # the leader's, on the old primary

    async def lose_the_primary() -> None:
        cluster.kill_node(old)

    lost = await clean_phase("loss", cluster, replicas, token, lose_the_primary)
    assert_outage_reported(lost)
    new = await cluster.the_primary()
    assert new != old
    assert (await cluster.timeline(new) or 0) > (timeline or 0)
    assert lost.unavailable is not None and lost.unavailable < NODE_LOSS_UNAVAILABLE_MAX
    assert lost.convergence < CONVERGENCE_MAX
    # The lease is a row: it came through the failover, and the leader elected on the
    # new primary holds a later generation that fences the old leader's writes out.
    assert await lease_generation(cluster.dsn) > generation > 0
    await assert_fenced_out(cluster.dsn, generation)

    async def rejoin() -> None:
        await cluster.start_node(old)

    async def caught_up() -> None:
        await cluster.wait_healthy()  # pg_rewind, streaming, then the synchronous standby

    await clean_phase("rejoin", cluster, replicas, token, rejoin, recover=caught_up)
    assert await cluster.primary() == new
    member = await cluster.member(old)
    assert member is not None and member["role"] == "replica"


async def test_switchover_under_load(
    healthy: HaCluster, replicas: list[ServerProcess], token: str
) -> None:
    cluster = healthy
    leader = await cluster.the_primary()
    (candidate,) = [n for n in cluster.nodes if n != leader]

    async def switchover() -> None:
        await cluster.switchover(leader, candidate)

    phase = await clean_phase("switch", cluster, replicas, token, switchover)
    assert await cluster.primary() == candidate
    assert phase.unavailable is None or phase.unavailable < SWITCHOVER_UNAVAILABLE_MAX
    assert phase.convergence < CONVERGENCE_MAX
    await cluster.wait_healthy()  # the old primary follows the new one


async def test_postmaster_sigkill_restarts_in_place(
    healthy: HaCluster, replicas: list[ServerProcess], token: str
) -> None:
    cluster = healthy
    primary = await cluster.the_primary()
    killed: list[int] = []

    async def kill_the_postmaster() -> None:
        killed.append(cluster.kill_postmaster(primary))

    phase = await clean_phase("crash", cluster, replicas, token, kill_the_postmaster)
    assert_outage_reported(phase)
    # Patroni restarted it in place: the same node is the primary, with a new postmaster
    # (Patroni recovers a crashed primary as a standby and promotes it: a new timeline).
    assert await cluster.primary() == primary
    assert primary.postmaster_pid() not in (None, *killed)
    assert phase.unavailable is not None and phase.unavailable < RESTART_UNAVAILABLE_MAX
    assert phase.convergence < CONVERGENCE_MAX
