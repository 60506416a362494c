"""The reaper on a real PostgreSQL: exactly the tools past retention, self-preservation, --force."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from omninode_bridge.liveness import Fence, LeadershipLostError, LivenessMetrics, Reaper
from omninode_bridge.liveness.leader import LEASE_NAME, LIVENESS_LOCK_KEY
from omninode_bridge.liveness.reaper import Q
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.liveness.helpers import event_kinds, register

TTL, RETENTION = 60.0, 600.0
OLD = RETENTION + 30  # heartbeat age of a tool past the retention
STALE = TTL + 30  # stale, but within the retention


def reaper_of(make_reaper: Callable[..., Reaper], threshold: float = 0.5) -> Reaper:
    return make_reaper(
        ttl_seconds=TTL, retention_seconds=RETENTION, self_preservation_threshold=threshold
    )


async def seed(repository: ToolRegistrationRepository, old: int, stale: int, fresh: int) -> None:
    for i in range(old):
        await register(repository, f"old-{i}", heartbeat_age=OLD)
    for i in range(stale):
        await register(repository, f"stale-{i}", heartbeat_age=STALE)
    for i in range(fresh):
        await register(repository, f"fresh-{i}")


async def test_removes_exactly_the_tools_past_retention(
    repository: ToolRegistrationRepository,
    make_reaper: Callable[..., Reaper],
    metrics: LivenessMetrics,
) -> None:
    await seed(repository, old=3, stale=2, fresh=5)
    await register(repository, "edge-in", heartbeat_age=RETENTION - 5)  # just inside: stays
    report = await reaper_of(make_reaper).run_pass()

    assert report.removed == ["old-0", "old-1", "old-2"]
    assert not report.self_preservation
    assert report.total == 11
    remaining = {t.tool_id for t in await repository.list_all_registrations()}
    assert remaining == {"stale-0", "stale-1", "edge-in"} | {f"fresh-{i}" for i in range(5)}
    deleted = [e for e in await repository.changes(None, 1000) if e.kind.value == "deleted"]
    assert sorted(e.tool_id for e in deleted) == report.removed
    for event in deleted:
        assert event.reason is not None
        assert event.reason.startswith("reaped: no heartbeat since ")
        assert event.registration is not None and event.registration.tool_id == event.tool_id
    # The sweep recorded the stale ones first (the reaped ones too, before removal).
    assert sorted(report.went_stale) == ["edge-in", "old-0", "old-1", "old-2", "stale-0", "stale-1"]
    assert await event_kinds(repository, "old-0") == ["created", "stale", "deleted"]
    assert metrics.reaped._value.get() == 3
    assert "removed 3 of 11 tools: old-0, old-1, old-2" in report.summary()

    again = await reaper_of(make_reaper).run_pass()
    assert again.removed == [] and again.went_stale == []
    assert again.summary().startswith("nothing to remove")


@pytest.mark.parametrize(
    ("old", "fresh", "threshold", "engaged"),
    [
        (5, 5, 0.5, False),  # exactly half: not "more than half"
        (6, 4, 0.5, True),
        (4, 6, 0.5, False),
        (1, 1, 0.5, False),
        (2, 1, 0.5, True),
        (3, 7, 0.3, False),  # 30% of 10 at a 30% threshold
        (4, 6, 0.3, True),
        (10, 0, 1.0, False),  # a threshold of 1 never holds back
        (1, 0, 0.5, True),  # a lone dead tool: held back until forced
    ],
)
async def test_self_preservation_at_and_around_the_threshold(
    repository: ToolRegistrationRepository,
    make_reaper: Callable[..., Reaper],
    metrics: LivenessMetrics,
    old: int,
    fresh: int,
    threshold: float,
    engaged: bool,
) -> None:
    await seed(repository, old=old, stale=0, fresh=fresh)
    report = await reaper_of(make_reaper, threshold).run_pass()
    assert report.self_preservation is engaged
    assert len(report.due) == old
    if engaged:
        assert report.held_back and report.removed == []
        assert await repository.count_registrations() == old + fresh
        assert metrics.self_preservation._value.get() == 1
        assert report.summary().startswith(
            f"self-preservation engaged: {old} of {old + fresh} registered tools"
        )
    else:
        assert len(report.removed) == old
        assert await repository.count_registrations() == fresh
        assert metrics.self_preservation._value.get() == 0


async def test_holds_back_pass_after_pass_until_the_share_drops(
    repository: ToolRegistrationRepository,
    make_reaper: Callable[..., Reaper],
    metrics: LivenessMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await seed(repository, old=6, stale=0, fresh=4)
    reaper = reaper_of(make_reaper)
    for _ in range(3):
        report = await reaper.run_pass()
        assert report.held_back and report.removed == []
    assert sum("self-preservation engaged: 6 of 10" in r.message for r in caplog.records) == 3
    assert metrics.self_preservation._value.get() == 1
    for i in range(4, 8):  # tools come back: 6 of 14 is below half
        await register(repository, f"fresh-{i}")
    report = await reaper.run_pass()
    assert not report.self_preservation
    assert report.removed == [f"old-{i}" for i in range(6)]
    assert metrics.self_preservation._value.get() == 0


async def test_force_overrides_self_preservation(
    repository: ToolRegistrationRepository, make_reaper: Callable[..., Reaper]
) -> None:
    await seed(repository, old=8, stale=0, fresh=2)
    report = await reaper_of(make_reaper).run_pass(force=True)
    assert report.self_preservation and report.forced and not report.held_back
    assert len(report.removed) == 8
    assert "overridden by --force" in report.summary()
    assert await repository.count_registrations() == 2


async def _snapshot(client: PostgresClient) -> tuple[object, ...]:
    async with client.acquire() as conn:
        return (
            await conn.fetch("SELECT * FROM tool_registrations ORDER BY tool_id"),
            await conn.fetch("SELECT * FROM tool_health ORDER BY tool_id"),
            await conn.fetch("SELECT txid::text, seq FROM tool_registration_events ORDER BY 1, 2"),
        )


@pytest.mark.parametrize("force", [False, True])
async def test_dry_run_writes_nothing(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    make_reaper: Callable[..., Reaper],
    force: bool,
) -> None:
    await seed(repository, old=3, stale=2, fresh=1)  # 50%: held back unless forced
    before = await _snapshot(postgres_client)
    report = await reaper_of(make_reaper, threshold=0.4).run_pass(dry_run=True, force=force)
    assert await _snapshot(postgres_client) == before
    assert report.dry_run and report.went_stale == []
    if force:
        assert report.removed == ["old-0", "old-1", "old-2"]
        assert report.summary().startswith("would remove 3 of 6 tools")
    else:
        assert report.held_back and report.removed == []
        assert "would remove nothing" in report.summary()


async def test_a_tool_that_heartbeats_meanwhile_is_not_removed(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    await seed(repository, old=2, stale=0, fresh=2)
    await repository.update_heartbeat("old-1")  # after the candidates were read
    row = await postgres_client.fetchrow(
        Q["reap"], ["old-0", "old-1", "fresh-0"], RETENTION, None, LEASE_NAME
    )
    assert row is not None and row["leading"] and list(row["tool_ids"]) == ["old-0"]


async def take_lease(client: PostgresClient, seconds: float) -> int | None:
    """The generation of the liveness lease taken for ``seconds``, or ``None`` while held."""
    value = await client.fetchval(
        Q["lease_acquire"], LEASE_NAME, "test", seconds, None, LIVENESS_LOCK_KEY
    )
    return int(value) if value is not None else None


async def test_a_fenced_pass_of_a_process_that_no_longer_leads_writes_nothing(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    make_reaper: Callable[..., Reaper],
) -> None:
    await seed(repository, old=2, stale=0, fresh=3)
    first = await take_lease(postgres_client, 60)
    assert first == 1
    assert await take_lease(postgres_client, 60) is None  # held: nobody else takes it
    with pytest.raises(LeadershipLostError):  # a generation that never held it
        await reaper_of(make_reaper).run_pass(fence=Fence(first + 1))
    assert await repository.count_registrations() == 5
    await repository.update_heartbeat("old-1")
    assert (await reaper_of(make_reaper).run_pass(fence=Fence(first))).removed == ["old-0"]

    # The lease runs out (nobody renewed it), and another generation takes it.
    await postgres_client.execute(
        "UPDATE liveness_leases SET expires_at = clock_timestamp() - interval '1 second'"
    )
    await register(repository, "old-2", heartbeat_age=OLD)
    with pytest.raises(LeadershipLostError):  # expired, even before a takeover
        await reaper_of(make_reaper).run_pass(fence=Fence(first))
    second = await take_lease(postgres_client, 60)
    assert second == first + 1
    with pytest.raises(LeadershipLostError):  # the deposed generation writes nothing
        await reaper_of(make_reaper).run_pass(fence=Fence(first))
    assert await repository.get_registration("old-2") is not None
    report = await reaper_of(make_reaper).run_pass(fence=Fence(second))
    assert report.removed == ["old-2"]
