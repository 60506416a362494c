"""The live index: registrations, deletions and heartbeats show up within their bounds."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import asyncpg
import pytest

from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from omninode_bridge.services.discovery import DiscoveryTuning
from omninode_bridge.services.feed_follower import FOLLOWER_APPLICATION_NAME
from tests.services.discovery.helpers import (
    FAST,
    MetricsWatcher,
    discovery_settings,
    register,
    tool_create,
    until,
)


async def test_new_and_deleted_tools_show_within_bounds(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService
) -> None:
    appear: list[float] = []
    vanish: list[float] = []
    for i in range(8):
        op = f"op-{i}"

        async def present(op: str = op) -> bool:
            return await service.discover_tool(op) is not None

        async def absent(op: str = op) -> bool:
            return await service.discover_tool(op) is None

        await register(repository, f"tool-{i}", "http://127.0.0.1:9", (op,))
        appear.append(await until(service, present, 2.0))
        await repository.delete_registration(f"tool-{i}")
        vanish.append(await until(service, absent, 2.0))
    # Bound: 2 s at worst (until() raises past it); typically well under 100 ms.
    assert statistics.median(appear) < 0.5, appear
    assert statistics.median(vanish) < 0.5, vanish
    assert service.metrics.feed_events == 16
    assert service.metrics.index_loads == 1  # followed, never reloaded


async def test_a_heartbeating_tool_stays_routable_past_its_ttl(
    repository: ToolRegistrationRepository,
) -> None:
    ttl = 1.0
    settings = discovery_settings(ttl_seconds=ttl)
    await register(repository, "steady", "http://127.0.0.1:9")
    async with ToolDiscoveryService(repository, settings, tuning=FAST) as service:
        loop = asyncio.get_running_loop()
        end = loop.time() + 3 * ttl
        next_beat = 0.0
        checks = 0
        while loop.time() < end:
            if loop.time() >= next_beat:
                await repository.update_heartbeat("steady")
                next_beat = loop.time() + 0.3
            # Heartbeats are not feed events: only the incremental refresh sees them.
            assert await service.discover_tool("stamp") is not None
            checks += 1
            await asyncio.sleep(0.01)
        assert checks > 100
        assert service.metrics.heartbeat_rows >= 5
        assert service.metrics.feed_events == 0


async def test_a_silent_tool_drops_out_at_its_ttl(
    repository: ToolRegistrationRepository,
) -> None:
    ttl = 1.0
    settings = discovery_settings(ttl_seconds=ttl)
    async with ToolDiscoveryService(repository, settings, tuning=FAST) as service:
        registration = await register(repository, "silent", "http://127.0.0.1:9")
        assert registration.last_heartbeat is not None
        deadline = registration.last_heartbeat.timestamp() + ttl

        async def present() -> bool:
            return await service.discover_tool("stamp") is not None

        await until(service, present, 2.0)
        last_seen = 0.0
        while time.time() < deadline + 1.0:
            before = time.time()
            if await service.discover_tool("stamp") is not None:
                last_seen = before
            await asyncio.sleep(0.005)
        # Seen until shortly before its deadline, never after it.
        assert deadline - 0.2 < last_seen < deadline
        assert await service.discover_tool("stamp") is None


async def test_a_dropped_feed_connection_is_resumed(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    watcher = MetricsWatcher()
    service = ToolDiscoveryService(
        repository, discovery_settings(), tuning=FAST, metrics=watcher.metrics
    )
    async with service:
        await register(repository, "before", "http://127.0.0.1:9", ("a",))

        async def has(op: str) -> bool:
            return await service.discover_tool(op) is not None

        await until(service, lambda: has("a"), 2.0)
        admin = await asyncpg.connect(db_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                FOLLOWER_APPLICATION_NAME,
            )
        finally:
            await admin.close()
        assert killed == 1
        await register(repository, "after", "http://127.0.0.1:9", ("b",))
        await until(service, lambda: has("b"), 2.0)
        await watcher.reach(lambda m: m.feed_reconnects >= 1, 2.0)
        await watcher.reach(lambda m: m.index_degraded == 0, 2.0)
        # Nothing missed or repeated: both tools, each once.
        assert service.index.tool_ids() == {"before", "after"}
        assert service.metrics.feed_events == 2


async def test_events_held_back_by_an_older_transaction_are_read_soon_after(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    slow_poll = DiscoveryTuning(heartbeat_interval=0.1, feed_poll_interval=3.0)
    async with ToolDiscoveryService(repository, discovery_settings(), tuning=slow_poll) as service:
        holder = await asyncpg.connect(db_dsn)
        try:
            # An older transaction with an id: the feed cannot show newer events yet.
            transaction = holder.transaction()
            await transaction.start()
            await holder.fetchval("SELECT pg_current_xact_id()")
            await register(repository, "late", "http://127.0.0.1:9", ("late-op",))
            await asyncio.sleep(0.2)  # the held-back window under test
            assert await service.discover_tool("late-op") is None
            await transaction.commit()
            loop = asyncio.get_running_loop()
            released = loop.time()

            async def present() -> bool:
                return await service.discover_tool("late-op") is not None

            await until(service, present, 2.0)
            # Re-read soon after the NOTIFY, not at the next 3 s poll.
            assert loop.time() - released < 0.6
        finally:
            await holder.close()


async def test_a_new_service_loads_many_tools_in_pages(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registrations(
        [tool_create(f"bulk-{i:04d}", "http://127.0.0.1:9") for i in range(2500)]
    )
    async with ToolDiscoveryService(repository, discovery_settings(), tuning=FAST) as service:
        assert len(service.index) == 2500
        assert len(await service.routable_tools("stamp")) == 2500


async def test_the_full_heartbeat_sweep_reads_every_tool_in_pages(
    repository: ToolRegistrationRepository,
) -> None:
    """A sweep of pages of 7 reads all 30 tools, and takes each heartbeat as the table holds it."""
    await repository.create_registrations(
        [tool_create(f"sweep-{i:02d}", "http://127.0.0.1:9") for i in range(30)]
    )
    tuning = DiscoveryTuning(load_page=4, sweep_page=7, full_sweep_interval=3600.0)
    async with ToolDiscoveryService(repository, discovery_settings(), tuning=tuning) as service:
        assert len(service.index) == 30
        await repository.client.execute(
            "UPDATE tool_registrations SET last_heartbeat = now() - interval '1 day'"
            " WHERE tool_id IN ('sweep-00', 'sweep-13', 'sweep-29')"
        )
        assert await service._sync.refresh_heartbeats(full=True) == 30
        stale = {f"sweep-{i:02d}" for i in (0, 13, 29)}
        routable = {r.tool_id for r in await service.routable_tools("stamp")}
        assert routable == {f"sweep-{i:02d}" for i in range(30)} - stale


async def test_a_refresh_that_keeps_failing_is_logged_once_until_it_recovers(
    repository: ToolRegistrationRepository, db_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema taken away under a running server (a downgrade) fails every refresh, a
    few times a second: one error with its traceback, not one per attempt."""
    await register(repository, "t", "http://127.0.0.1:9")
    logged = "refreshing heartbeats failed"
    watcher = MetricsWatcher()
    service = ToolDiscoveryService(
        repository, discovery_settings(), tuning=FAST, metrics=watcher.metrics
    )
    async with service:
        await service.discover_tool("stamp")  # loaded
        admin = await asyncpg.connect(db_dsn)
        try:
            with caplog.at_level(logging.ERROR, logger="omninode_bridge.services.discovery"):
                await admin.execute("ALTER TABLE tool_registrations RENAME TO moved_away")
                await asyncio.sleep(12 * FAST.heartbeat_interval)  # a dozen failed refreshes
                assert sum(logged in r.getMessage() for r in caplog.records) == 1
                await admin.execute("ALTER TABLE moved_away RENAME TO tool_registrations")
                before = service.metrics.heartbeat_refreshes
                # Recovered: a refresh succeeds again.
                await watcher.reach(lambda m: m.heartbeat_refreshes > before, 5.0)
                await admin.execute("ALTER TABLE tool_registrations RENAME TO moved_away")
                await asyncio.sleep(6 * FAST.heartbeat_interval)
                assert sum(logged in r.getMessage() for r in caplog.records) == 2  # anew
        finally:
            await admin.execute("ALTER TABLE IF EXISTS moved_away RENAME TO tool_registrations")
            await admin.close()
