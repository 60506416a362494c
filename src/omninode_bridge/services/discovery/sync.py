"""Keeping the index current: one load, then the change feed and heartbeat refreshes.

- **Load**: the feed's head cursor first, then every tool's routing columns
  page by page (not the full registrations); the feed is then followed from
  that cursor, so whatever changed during the load is replayed on top of it
  (events are idempotent on the index).
- **Changes**: the feed is followed by the one
  :class:`~omninode_bridge.services.feed_follower.FeedFollower` (LISTEN, poll,
  held-back retries, reconnect with backoff, resume from the cursor); a cursor
  older than the feed's retention triggers a full reload.
- **Heartbeats** are not events. Every ``heartbeat_interval`` one query returns
  the database clock and the tools whose ``last_heartbeat`` is newer than the
  previous look (minus ``heartbeat_overlap`` for transactions still
  committing), and those whose heartbeat moved backwards since (recorded in
  ``heartbeat_rewinds`` by the statement that moved it), which replace what
  the index holds; every ``full_sweep_interval`` it reads every heartbeat
  instead, ``sweep_page`` tools per query. Each answer re-measures the
  offset between the database clock and the monotonic clock.

While the database cannot be reached the index keeps serving what it knows
(tools still expire at their TTL), logs a warning and sets
``metrics.index_degraded``; after ``stale_index_grace_seconds`` :meth:`check`
raises :class:`IndexUnavailableError` until the index is current again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from omninode_bridge.errors import (
    IndexUnavailableError,
    RegistryUnavailableError,
    ResyncRequiredError,
)
from omninode_bridge.models import ChangeEvent, ChangeKind
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.explain import CRITICAL_REASON
from omninode_bridge.services.discovery.index import ToolIndex
from omninode_bridge.services.discovery.metrics import DiscoveryMetrics
from omninode_bridge.services.discovery.registrations import RegistrationCache
from omninode_bridge.services.feed_follower import FeedFollower, FollowTuning
from omninode_bridge.services.sql import load_queries
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository
from omninode_bridge.settings import Settings

__all__ = ["DiscoveryTuning", "IndexSync", "IndexUnavailableError"]

logger = logging.getLogger(__name__)

Q = load_queries("discovery.sql")


@dataclass(frozen=True, slots=True)
class DiscoveryTuning:
    """Intervals of the index's background work, in seconds (the defaults suit production)."""

    heartbeat_interval: float = 0.25
    heartbeat_overlap: float = 1.0
    full_sweep_interval: float = 60.0
    sweep_page: int = 20_000  # tools per query of the full sweep
    feed_poll_interval: float = 0.5
    held_back_retry: float = 0.01  # first re-read when a NOTIFY's events are held back
    feed_batch: int = 1000
    load_page: int = 5000
    query_timeout: float = 5.0
    stall_seconds: float = 2.0  # no successful heartbeat refresh for this long: stale
    reconnect_min: float = 0.05
    reconnect_max: float = 0.5  # how late the index follows again after a failover, at most

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscoveryTuning:
        """The intervals set by ``TOOLREG_DISCOVERY_*``; page sizes keep their defaults."""
        return cls(
            heartbeat_interval=settings.discovery_heartbeat_interval_seconds,
            heartbeat_overlap=settings.discovery_heartbeat_overlap_seconds,
            full_sweep_interval=settings.discovery_full_sweep_interval_seconds,
            feed_poll_interval=settings.discovery_feed_poll_interval_seconds,
            stall_seconds=settings.discovery_stall_seconds,
            query_timeout=settings.discovery_query_timeout_seconds,
            reconnect_max=settings.discovery_reconnect_max_seconds,
        )


class IndexSync:
    """Loads a :class:`ToolIndex` and keeps it current in two background tasks.

    ``cache`` (optional) receives every registration the feed carries and
    forgets deleted tools.
    """

    def __init__(
        self,
        repository: ToolRegistrationRepository,
        index: ToolIndex,
        *,
        grace_seconds: float,
        tuning: DiscoveryTuning,
        metrics: DiscoveryMetrics,
        cache: RegistrationCache | None = None,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.index = index
        self.clock: DbClock = index.clock
        self.grace_seconds = grace_seconds
        self.tuning = tuning
        self.metrics = metrics
        self.cursor: str | None = None
        self._since = 0.0  # heartbeats newer than this (database epoch seconds) are unread
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._feed_failed_since: float | None = None
        self._beat_failed_since: float | None = None
        self._refresh_logged = False  # this outage of the heartbeat refresh was logged
        self._last_beat_ok = time.monotonic()
        self._last_error: BaseException | None = None
        self._reported_unavailable = False

    # -- lifecycle ---------------------------------------------------------------

    async def load(self) -> None:
        """Read every tool's routing columns into the index (replacing what it held).

        One query per ``tuning.load_page`` tools (``routing_page``: tool id,
        operations, endpoints, heartbeat; no full registration), the next page
        read while this one is indexed. Raises what the repository raises
        (RegistryUnavailableError when the database cannot be reached); the
        index is then left as it was, plus whatever pages were read.
        """
        cursor = await self.repository.feed.head_cursor()
        before = time.monotonic()
        client = self.repository.client
        db_now = float(await client.fetchval(Q["db_clock"]))
        self.clock.sample(db_now, before)
        reload = len(self.index) > 0
        seen: set[str] = set()
        put = self.index.put
        page = await client.fetch(Q["routing_page"], "", self.tuning.load_page)
        while page:
            following = None
            if len(page) == self.tuning.load_page:
                following = asyncio.ensure_future(
                    client.fetch(Q["routing_page"], page[-1][0], self.tuning.load_page)
                )
            try:
                for tool_id, operations, endpoints, heartbeat in page:
                    put(tool_id, operations, endpoints or {}, heartbeat)
                if reload:
                    seen.update(row[0] for row in page)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            page = await following if following is not None else []
        if reload:  # the first load starts empty: nothing to drop, no set of a million ids
            self.index.retain(seen)
        if self.cache is not None:
            self.cache.clear()
        critical = {row["tool_id"] for row in await client.fetch(Q["critical_tool_ids"])}
        for tool_id, reason in self.index.excluded().items():
            if reason == CRITICAL_REASON and tool_id not in critical:
                self.index.clear_excluded(tool_id)
        for tool_id in critical:
            self.index.set_excluded(tool_id, CRITICAL_REASON)
        self.cursor = cursor
        self._since = db_now - self.tuning.heartbeat_overlap
        self._last_beat_ok = time.monotonic()
        self.metrics.index_loaded(len(self.index))
        self._signal()

    def start(self) -> None:
        """Start following the feed and refreshing heartbeats (after :meth:`load`)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._follow_feed(), name="discovery-feed"),
            asyncio.create_task(self._refresh_heartbeats(), name="discovery-heartbeats"),
        ]

    async def stop(self) -> None:
        """Cancel the background tasks and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # gather() still raises if stop() itself is cancelled.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):  # the loops catch everything: a bug
                logger.error("%s ended with %r", task.get_name(), result)

    async def changed(self) -> None:
        """Return once the index next applies something (events, heartbeats, a reload)."""
        await self._changed.wait()

    # -- staleness ------------------------------------------------------------------

    def stale_since(self) -> float | None:
        """Monotonic time since which the index is not known to be current; ``None``: current."""
        marks = [m for m in (self._feed_failed_since, self._beat_failed_since) if m is not None]
        if time.monotonic() - self._last_beat_ok > self.tuning.stall_seconds:
            marks.append(self._last_beat_ok)
        return min(marks) if marks else None

    def check(self) -> None:
        """Raise IndexUnavailableError when the index has been stale past the grace period."""
        if (
            self._feed_failed_since is None
            and self._beat_failed_since is None
            and time.monotonic() - self._last_beat_ok <= self.tuning.stall_seconds
        ):
            return
        since = self.stale_since()
        if since is None:
            return
        self._mark_degraded(since)
        stale_for = time.monotonic() - since
        if stale_for <= self.grace_seconds:
            return
        if not self._reported_unavailable:
            self._reported_unavailable = True
            self.metrics.became_unavailable()
            logger.error(
                "discovery index stale for %.1fs (grace %.0fs): failing calls until the "
                "database is back (%s)",
                stale_for,
                self.grace_seconds,
                self._last_error,
            )
        raise IndexUnavailableError(
            f"the discovery index has not been refreshed for {stale_for:.1f}s, longer than "
            f"the {self.grace_seconds:g}s grace (TOOLREG_STALE_INDEX_GRACE_SECONDS): "
            f"{self._last_error or 'no heartbeat refresh succeeded'}"
        ) from self._last_error

    def _mark_degraded(self, since: float) -> None:
        if self.metrics.index_degraded:
            return
        self.metrics.became_stale(since)
        logger.warning(
            "discovery index is stale (%s); serving the last known %d tools for up to %.0fs",
            self._last_error or "heartbeat refresh stalled",
            len(self.index),
            self.grace_seconds,
        )

    def _failed(self, which: str, exc: BaseException) -> None:
        self._last_error = exc
        self.metrics.sync_failed()
        now = time.monotonic()
        if which == "feed" and self._feed_failed_since is None:
            self._feed_failed_since = now
        if which == "heartbeats" and self._beat_failed_since is None:
            self._beat_failed_since = now
        since = self.stale_since()
        if since is not None:
            self._mark_degraded(since)

    def _recovered(self, which: str) -> None:
        if which == "feed":
            self._feed_failed_since = None
        else:
            self._beat_failed_since = None
            self._last_beat_ok = time.monotonic()
        if self.metrics.index_degraded and self.stale_since() is None:
            stale_since = self.metrics.index_stale_since
            self.metrics.became_current()
            self._reported_unavailable = False
            self._last_error = None
            took = time.monotonic() - stale_since if stale_since is not None else 0.0
            logger.info("discovery index is current again after %.1fs", took)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the change feed --------------------------------------------------------------

    async def _follow_feed(self) -> None:
        delay = self.tuning.reconnect_min
        while True:
            follower = FeedFollower(
                self.repository.feed,
                self.cursor,
                tuning=FollowTuning(
                    batch_size=self.tuning.feed_batch,
                    poll_interval=self.tuning.feed_poll_interval,
                    held_back_retry=self.tuning.held_back_retry,
                    reconnect_min=self.tuning.reconnect_min,
                    reconnect_max=self.tuning.reconnect_max,
                ),
                on_lost=self._feed_lost,
                on_recovered=lambda: self._recovered("feed"),
                name="discovery index",
            )
            try:
                async for events in follower.batches():
                    self._apply(events)
            except ResyncRequiredError as exc:
                logger.warning("discovery index reloads: %s", exc)
                try:
                    await self.load()
                    delay = self.tuning.reconnect_min
                except Exception as load_exc:  # retried below, reported by check()
                    self._failed("feed", load_exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.tuning.reconnect_max)

    def _feed_lost(self, exc: BaseException) -> None:
        self._failed("feed", exc)
        self.metrics.feed_lost()

    def _apply(self, events: list[ChangeEvent]) -> None:
        index, cache = self.index, self.cache
        for event in events:
            if event.kind is ChangeKind.DELETED:
                index.remove(event.tool_id)
                if cache is not None:
                    cache.drop(event.tool_id)
            elif event.kind is ChangeKind.CRITICAL:
                index.set_excluded(event.tool_id, CRITICAL_REASON)
            elif event.kind is ChangeKind.PASSING:
                if index.excluded().get(event.tool_id) == CRITICAL_REASON:
                    index.clear_excluded(event.tool_id)
            elif event.registration is not None:
                index.upsert(event.registration)
                if cache is not None:
                    cache.update(event.registration)
            self.cursor = event.cursor
        self.metrics.feed_applied(len(events), len(index))
        self._signal()

    # -- heartbeats ---------------------------------------------------------------------

    async def _refresh_heartbeats(self) -> None:
        next_sweep = time.monotonic() + self.tuning.full_sweep_interval
        while True:
            await asyncio.sleep(self.tuning.heartbeat_interval)  # the refresh period
            full = time.monotonic() >= next_sweep
            try:
                await self.refresh_heartbeats(full=full)
            except Exception as exc:  # retried next period, reported by check()
                # Logged once per outage (retried every period, a few times a second):
                # the index's degraded state and metrics say it lasts; recovery is logged.
                # An outage is logged at its first error that is not a plain outage of
                # the database (which the pool and the feed report themselves).
                if not self._refresh_logged and not isinstance(
                    exc, RegistryUnavailableError | TimeoutError
                ):
                    self._refresh_logged = True
                    logger.exception(
                        "discovery index: refreshing heartbeats failed (retried every %gs; "
                        "logged again after it recovers)",
                        self.tuning.heartbeat_interval,
                    )
                self._failed("heartbeats", exc)
                continue
            if full:
                next_sweep = time.monotonic() + self.tuning.full_sweep_interval
            self._refresh_logged = False
            self._recovered("heartbeats")

    async def refresh_heartbeats(self, *, full: bool = False) -> int:
        """Read the heartbeats newer than the last look (every one if ``full``); returns how many.

        The full sweep reads ``tuning.sweep_page`` tools per query (by tool
        id), each query within ``tuning.query_timeout``: at a million tools
        one query for all would outlast the timeout and hold the event loop
        for seconds. Raises TimeoutError after ``tuning.query_timeout`` and
        what the client raises.
        """
        client = self.repository.client
        heartbeat = self.index.heartbeat
        page: tuple[str, int] | None = ("", self.tuning.sweep_page) if full else None
        since: float | None = None
        count = 0
        while True:
            before = time.monotonic()
            async with asyncio.timeout(self.tuning.query_timeout):
                if page is None:
                    row = await client.fetchrow(Q["heartbeats_since"], self._since)
                else:
                    row = await client.fetchrow(Q["heartbeats_page"], *page)
            assert row is not None  # an aggregate always returns one row
            db_now = float(row["db_now"])
            self.clock.sample(db_now, before)
            if since is None:
                since = db_now - self.tuning.heartbeat_overlap  # the first read's clock
            tool_ids, beats, exact = row["tool_ids"], row["heartbeats"], row["exact"]
            for tool_id, beat, rewound in zip(tool_ids, beats, exact, strict=True):
                heartbeat(tool_id, beat, exact=rewound)
            count += len(tool_ids)
            if page is None or len(tool_ids) < page[1]:
                break
            page = (tool_ids[-1], page[1])
        self._since = since
        self.metrics.heartbeats_refreshed(count)
        if count:
            self._signal()
        return count
