"""FeedHub: one change-feed follower per process, fanned out to many subscribers.

Each subscriber (an SSE client, a cache) first replays from its own cursor
through ``ChangeFeed.changes`` and then receives live events from the hub,
with nothing missed or repeated across the hand-over: it subscribes before
it replays and drops live events at or before its last replayed cursor.

Memory is bounded in bytes, not events: a subscriber's live buffer holds at
most ``buffer_bytes`` of events (a registration's JSON size, estimated once
per event); one that falls further behind is cut off (its iterator raises
``SubscriberLagError``) and resumes from its last cursor. Replays read the
database page by page, each page sized to about ``replay_page_bytes``, and at
most ``replay_concurrency`` subscribers replay at once.

When the follower loses the database, every open subscription ends with
``FeedInterruptedError`` (clients reconnect with their last cursor and lose
nothing), and :attr:`following` stays false until it follows again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

import orjson

from omninode_bridge.errors import (
    FeedInterruptedError,
    OmniNodeBridgeError,
    RegistryOverloadedError,
    RegistryUnavailableError,
    ResyncRequiredError,
    SubscriberLagError,
)
from omninode_bridge.models import ChangeEvent
from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.feed_follower import FeedFollower, FollowTuning
from omninode_bridge.tasks import cancel_and_wait

__all__ = ["FeedHub", "FeedInterruptedError", "SubscriberLagError", "event_size"]

logger = logging.getLogger(__name__)

EVENT_OVERHEAD = 512  # bytes of an event beyond its registration's JSON
MAX_REPLAY_PAGE = 500
FIRST_REPLAY_PAGE = 20


def event_size(event: ChangeEvent) -> int:
    """An estimate of an event's size in bytes: its registration's JSON plus a constant."""
    reg = event.registration
    if reg is None:
        return EVENT_OVERHEAD
    return (
        EVENT_OVERHEAD
        + len(orjson.dumps(reg.capabilities))
        + len(orjson.dumps(reg.endpoints))
        + len(orjson.dumps(reg.metadata))
    )


class _Subscriber:
    """One subscriber's live buffer, bounded in bytes."""

    def __init__(self, limit: int, on_dropped: Callable[[], None] | None) -> None:
        self.limit = limit
        self.on_dropped = on_dropped
        self.events: deque[tuple[ChangeEvent, int]] = deque()
        self.bytes = 0
        self.wake = asyncio.Event()
        self.ended: OmniNodeBridgeError | None = None
        self.closed = False

    def offer(self, event: ChangeEvent, size: int) -> bool:
        """Buffer ``event``; False (and nothing buffered) when it would pass the limit."""
        if self.bytes + size > self.limit:
            return False
        self.events.append((event, size))
        self.bytes += size
        self.wake.set()
        return True

    def end(self, error: OmniNodeBridgeError | None) -> None:
        """No more events: raise ``error`` after the buffered ones (None: just stop)."""
        if self.ended is None and not self.closed:
            self.ended = error
            self.closed = error is None
        self.wake.set()

    async def next(self) -> ChangeEvent | None:
        """The next buffered event; None when ended cleanly; raises the ending error."""
        while True:
            if self.ended is not None:
                raise self.ended  # lag or loss: the buffer is stale either way
            if self.events:
                event, size = self.events.popleft()
                self.bytes -= size
                return event
            if self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()


class FeedHub:
    """Follows the change feed once and hands every event to every subscriber."""

    def __init__(
        self,
        feed: ChangeFeed,
        *,
        buffer_bytes: int = 4 * 1024 * 1024,
        replay_page_bytes: int = 1024 * 1024,
        replay_concurrency: int = 8,
        tuning: FollowTuning | None = None,
        on_event: Callable[[ChangeEvent], None] | None = None,
        on_following: Callable[[bool], None] | None = None,
    ) -> None:
        self.feed = feed
        self.buffer_bytes = buffer_bytes
        self.replay_page_bytes = replay_page_bytes
        self.tuning = tuning if tuning is not None else FollowTuning()
        self.on_event = on_event
        self.on_following = on_following
        self._replays = asyncio.Semaphore(replay_concurrency)
        self._subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._follower: FeedFollower | None = None
        self._first_read = asyncio.Event()

    @property
    def following(self) -> bool:
        """True while the hub follows the feed (its last read succeeded)."""
        return self._follower is not None and self._follower.following

    @property
    def last_error(self) -> BaseException | None:
        """Why the hub is not following, when it is not."""
        return self._follower.last_error if self._follower is not None else None

    async def start(self, wait: float = 5.0) -> None:
        """Begin following from the feed's head (events before it are for replays).

        Returns once the first read succeeded (so that streams are accepted at
        once), or after ``wait`` seconds, the follower then retrying on its own.
        """
        if self._task is None:
            self._follower = self._new_follower(await self.feed.head_cursor())
            self._task = asyncio.create_task(self._run(), name="toolreg-feed-hub")
            self._task.add_done_callback(self._ended)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._first_read.wait()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for subscriber in list(self._subscribers):
            subscriber.end(None)

    def _new_follower(self, cursor: str) -> FeedFollower:
        return FeedFollower(
            self.feed,
            cursor,
            tuning=self.tuning,
            on_lost=self._lost,
            on_recovered=self._recovered,
            name="change-feed hub",
        )

    def _ended(self, task: asyncio.Task[None]) -> None:
        # _run only ends when cancelled; anything else is a bug, and must be seen.
        if not task.cancelled() and task.exception() is not None:
            logger.error("change-feed hub stopped", exc_info=task.exception())
            self._lost(RegistryUnavailableError("the change-feed hub stopped"))

    def _lost(self, exc: BaseException) -> None:
        if self.on_following is not None:
            self.on_following(False)
        error = FeedInterruptedError(
            "the registry lost its change feed; reconnect with Last-Event-ID to resume"
        )
        for subscriber in list(self._subscribers):
            subscriber.end(error)
        self._subscribers.clear()

    def _recovered(self) -> None:
        self._first_read.set()
        if self.on_following is not None:
            self.on_following(True)

    async def _run(self) -> None:
        while True:
            follower = self._follower
            assert follower is not None
            try:
                async for events in follower.batches():
                    self._publish(events)
            except ResyncRequiredError as exc:
                # Only after an outage longer than the feed's retention.
                logger.error("change-feed hub fell behind the retention: %s; restarting", exc)
                self._lost(exc)
                await self._restart_from_head()
            except Exception as exc:  # a bug in a callback: log, recover, go on
                logger.exception("change-feed hub failed; restarting from its cursor")
                self._lost(exc)
                await asyncio.sleep(self.tuning.reconnect_max)

    async def _restart_from_head(self) -> None:
        delay = self.tuning.reconnect_min
        while True:
            try:
                self._follower = self._new_follower(await self.feed.head_cursor())
                return
            except OmniNodeBridgeError as exc:
                logger.warning("change-feed hub cannot read the feed's head (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.tuning.reconnect_max)

    def _publish(self, events: list[ChangeEvent]) -> None:
        subscribers = self._subscribers
        for event in events:
            if self.on_event is not None:
                self.on_event(event)
            if not subscribers:
                continue
            size = event_size(event)
            for subscriber in list(subscribers):
                if not subscriber.offer(event, size):
                    subscribers.discard(subscriber)
                    if subscriber.on_dropped is not None:
                        subscriber.on_dropped()
                    subscriber.end(
                        SubscriberLagError(
                            f"subscriber fell more than {self.buffer_bytes} bytes behind the "
                            "change feed; reconnect with Last-Event-ID to resume"
                        )
                    )

    async def subscribe(
        self, since_cursor: str | None, *, on_dropped: Callable[[], None] | None = None
    ) -> AsyncIterator[ChangeEvent]:
        """Events after ``since_cursor`` (``None``: only new ones), replayed then live;
        ``on_dropped`` is called if this subscriber is cut off for lagging.

        Raises FeedInterruptedError when the hub is not following (now, or
        later while the subscription runs), SubscriberLagError when the
        subscriber falls behind, ResyncRequiredError for a cursor outside the
        feed, and RegistryOverloadedError when no replay slot frees up in time.
        """
        if not self.following:
            raise FeedInterruptedError(
                f"the registry is not following its change feed right now ({self.last_error}); "
                "retry shortly"
            )
        subscriber = _Subscriber(self.buffer_bytes, on_dropped)
        self._subscribers.add(subscriber)
        try:
            last = FeedPosition.parse(since_cursor) if since_cursor else None
            if since_cursor:
                async for event in self._replay(since_cursor):
                    last = FeedPosition.parse(event.cursor)
                    yield event
            while True:
                item = await subscriber.next()
                if item is None:
                    return
                position = FeedPosition.parse(item.cursor)
                if last is not None and position <= last:
                    continue
                last = position
                yield item
        finally:
            self._subscribers.discard(subscriber)

    async def _replay(self, cursor: str) -> AsyncIterator[ChangeEvent]:
        """The events after ``cursor`` from the database, a page at a time."""
        page = FIRST_REPLAY_PAGE
        while True:
            try:
                async with asyncio.timeout(self.feed.client.settings.pool_acquire_timeout):
                    await self._replays.acquire()
            except TimeoutError:
                raise RegistryOverloadedError(
                    "every replay slot of the change feed stayed busy; retry shortly"
                ) from None
            try:
                batch = await self.feed.changes(cursor, page)
            finally:
                self._replays.release()
            for event in batch:
                yield event
            if len(batch) < page:
                return
            cursor = batch[-1].cursor
            biggest = max(event_size(e) for e in batch)
            page = max(1, min(MAX_REPLAY_PAGE, self.replay_page_bytes // biggest))
