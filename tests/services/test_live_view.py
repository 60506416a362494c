"""LiveView across an outage of its feed, on a real database: it resumes after the last
event it applied instead of loading the whole registry again, and misses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from omninode_bridge.liveness import LEASE_NAME
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.live_view import LiveView
from omninode_bridge.services.sql import load_queries
from tests.support import admin, registration


class CountingView(LiveView):
    """A LiveView that counts its full loads."""

    loads = 0

    async def _load(self) -> str:
        self.loads += 1
        return await super()._load()


async def _until(what: str, predicate: Callable[[], bool], timeout: float = 20) -> None:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def test_a_lost_feed_is_resumed_not_reloaded(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    await repository.create_registration(registration("before"))
    hub = FeedHub(repository.feed)
    await hub.start()
    view = CountingView(repository, hub, keys=lambda r: ["all"])
    try:
        await view.ensure_started(10)
        assert view.get("before") is not None and view.loads == 1
        await repository.create_registration(registration("first"))
        await _until("first", lambda: view.get("first") is not None)

        # Every other session of this database ends: the hub's LISTEN connection and
        # the pool's connections alike. The hub stops following, then follows again.
        await postgres_client.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await _until("the view noticed", lambda: not view.current)
        await repository.create_registration(registration("during"))
        await repository.delete_registration("first")
        await _until("the view is current", lambda: view.current)
        await _until("during", lambda: view.get("during") is not None)
        await _until("first deleted", lambda: view.get("first") is None)
        assert view.loads == 1  # resumed from its cursor
        assert {t.tool_id for t in view.members("all")} == {"before", "during"}
    finally:
        await view.aclose()
        await hub.aclose()


async def test_while_the_feed_is_away_the_view_stays_not_current_and_says_so_once(
    repository: ToolRegistrationRepository,
    db_dsn: str,
    server_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outage of some seconds: the view does not claim to be current between its
    retries (reads get 503, not a view that stopped following), and logs one line when
    it stops and one when it is current again."""
    name = urlsplit(db_dsn).path.lstrip("/")
    hub = FeedHub(repository.feed)
    await hub.start()
    view = CountingView(repository, hub)
    caplog.set_level(logging.INFO, logger="omninode_bridge.services.live_view")
    try:
        await view.ensure_started(10)
        await admin(server_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin(
            server_dsn,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        await _until("the view noticed", lambda: not view.current)
        claimed = False
        away_until = time.monotonic() + 3
        while time.monotonic() < away_until:
            claimed |= view.current
            await asyncio.sleep(0.01)
        assert not claimed, "the view said it was current while its feed was away"
        await admin(server_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await _until("current again", lambda: view.current)
        lines = [r.getMessage() for r in caplog.records if r.name.endswith("live_view")]
        assert sum("stopped following" in line for line in lines) == 1, lines
        assert sum("current again" in line for line in lines) == 1, lines
        assert view.loads == 1
    finally:
        await admin(server_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await view.aclose()
        await hub.aclose()


async def test_the_view_pages_ids_in_order_and_says_what_each_change_touched(
    repository: ToolRegistrationRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tool_id in ("b", "d", "a"):
        await repository.create_registration(registration(tool_id))
    hub = FeedHub(repository.feed)
    await hub.start()
    view = CountingView(repository, hub)
    try:
        await view.ensure_started(10)
        assert view.ids_after(None, 10) == ["a", "b", "d"]
        assert view.ids_after("a", 1) == ["b"] and view.ids_after("d", 5) == []
        loaded = view.generation
        assert view.changes_since(loaded) == set()
        assert view.changes_since(loaded - 1) is None  # before the load: unknown

        await repository.create_registration(registration("c"))
        await _until("c", lambda: view.get("c") is not None)
        assert view.ids_after("b", 2) == ["c", "d"]
        after_c = view.generation
        await repository.delete_registration("a")
        await _until("a deleted", lambda: view.get("a") is None)
        assert view.ids_after(None, 10) == ["b", "c", "d"]
        assert view.changes_since(after_c) == {"a"}
        assert view.changes_since(loaded) == {"a", "c"}
        assert view.changes_since(view.generation) == set()

        # Health kept as events apply: counts without walking the view.
        def recount() -> dict[str, int]:
            counts = dict.fromkeys(("healthy", "stale", "critical"), 0)
            for tool in view.tools():
                counts[tool.health] += 1
            return counts

        assert view.health_counts() == recount() == {"healthy": 3, "stale": 0, "critical": 0}
        liveness = load_queries("liveness.sql")
        await repository.client.execute(  # heard from an hour ago: all stale now
            "UPDATE tool_registrations SET last_heartbeat = now() - interval '1 hour'"
        )
        await repository.client.fetch(liveness["mark_stale"], 60.0, None, "test")
        await _until("stale", lambda: view.health_counts()["stale"] == 3)
        assert view.health_counts() == recount() == {"healthy": 0, "stale": 3, "critical": 0}
        await repository.update_heartbeat("c")
        await repository.client.fetch(liveness["mark_healthy"], 60.0, None, "test")
        await _until("c healthy", lambda: view.health_counts()["healthy"] == 1)
        assert view.health_counts() == recount() == {"healthy": 1, "stale": 2, "critical": 0}
        # Active checks: critical counts over stale and healthy alike, passing gives it back.
        for tool_id, status in (("c", "critical"), ("b", "critical"), ("c", "passing")):
            generation = await repository.client.fetchval(
                "SELECT coalesce(max(check_generation), 0) FROM tool_health WHERE tool_id = $1",
                tool_id,
            )
            await repository.client.fetch(
                liveness["record_checks"],
                [tool_id], [status], [0], [0], [True], [1.0], [None], [generation],
                [status], ["test"], None, LEASE_NAME,
            )  # fmt: skip
        await _until("c passing", lambda: getattr(view.get("c"), "check_status", "") == "passing")
        assert view.health_counts() == recount() == {"healthy": 1, "stale": 1, "critical": 1}

        # More changes than the journal holds, unread: the view cannot say any more.
        monkeypatch.setattr("omninode_bridge.services.live_view.JOURNAL_ENTRIES", 2)
        before = view.generation
        for tool_id in ("e", "f", "g"):
            await repository.create_registration(registration(tool_id))
        await _until("g", lambda: view.get("g") is not None)
        assert view.changes_since(before) is None
        assert view.changes_since(view.generation) == set()
        assert view.loads == 1
    finally:
        await view.aclose()
        await hub.aclose()
