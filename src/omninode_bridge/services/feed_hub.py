"""FeedHub: one LISTEN connection per process, fanned out to many subscribers.

Each subscriber (an SSE client, a cache) first replays from its own cursor
through ``ChangeFeed.changes`` and then receives live events from the hub,
with nothing missed or repeated across the hand-over: it subscribes before
it replays and drops live events at or before its last replayed cursor. A
subscriber that falls too far behind is cut off (its iterator raises
``SubscriberLagError``) and resumes from its last cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.models import ChangeEvent
from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.cursors import FeedPosition

__all__ = ["FeedHub", "SubscriberLagError"]

logger = logging.getLogger(__name__)
_CLOSED = object()


class SubscriberLagError(OmniNodeBridgeError):
    """A subscriber fell behind the hub's buffer; resume from its last cursor."""


class FeedHub:
    """Follows the change feed once and hands every event to every subscriber."""

    def __init__(
        self,
        feed: ChangeFeed,
        *,
        queue_size: int = 1000,
        poll_interval: float = 1.0,
        retry_delay: float = 1.0,
        on_event: Callable[[ChangeEvent], None] | None = None,
    ) -> None:
        self.feed = feed
        self.queue_size = queue_size
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.on_event = on_event
        self._subscribers: set[asyncio.Queue[object]] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor: str | None = None

    async def start(self) -> None:
        """Begin following from the feed's head (events before it are for replays)."""
        if self._task is None:
            self._cursor = await self.feed.head_cursor()
            self._task = asyncio.create_task(self._run(), name="toolreg-feed-hub")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in list(self._subscribers):
            self._offer(queue, _CLOSED)

    def _offer(self, queue: asyncio.Queue[object], item: object) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._subscribers.discard(queue)
            # Make room for the marker: the subscriber learns it lagged.
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(SubscriberLagError("subscriber fell behind the change feed"))

    async def _run(self) -> None:
        while True:
            try:
                async for event in self.feed.watch(self._cursor, poll_interval=self.poll_interval):
                    self._cursor = event.cursor
                    if self.on_event is not None:
                        self.on_event(event)
                    for queue in list(self._subscribers):
                        self._offer(queue, event)
            except asyncio.CancelledError:
                raise
            except OmniNodeBridgeError as exc:
                logger.warning("change feed follower lost the database (%s); retrying", exc)
                await asyncio.sleep(self.retry_delay)

    async def subscribe(self, since_cursor: str | None) -> AsyncIterator[ChangeEvent]:
        """Events after ``since_cursor`` (``None``: only new ones), replayed then live."""
        queue: asyncio.Queue[object] = asyncio.Queue(self.queue_size)
        self._subscribers.add(queue)
        try:
            last = FeedPosition.parse(since_cursor) if since_cursor else None
            if since_cursor:
                while True:
                    batch = await self.feed.changes(since_cursor, 500)
                    for event in batch:
                        yield event
                    if len(batch) < 500:
                        break
                    since_cursor = batch[-1].cursor
                    last = FeedPosition.parse(since_cursor)
                if batch:
                    last = FeedPosition.parse(batch[-1].cursor)
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                if isinstance(item, SubscriberLagError):
                    raise item
                assert isinstance(item, ChangeEvent)
                position = FeedPosition.parse(item.cursor)
                if last is not None and position <= last:
                    continue
                last = position
                yield item
        finally:
            self._subscribers.discard(queue)
