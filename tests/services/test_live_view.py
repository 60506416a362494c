"""LiveView across an outage of its feed, on a real database: it resumes after the last
event it applied instead of loading the whole registry again, and misses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.live_view import LiveView
from tests.support import registration


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
