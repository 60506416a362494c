"""FeedFollower: the one loop that follows the change feed, for every consumer.

The SSE hub, the discovery index and :meth:`ChangeFeed.watch` all follow the
feed through this class. It holds one connection that ``LISTEN``\\ s on
``toolreg_changes`` and reads the feed on that same connection (so a pool
exhausted by other work never starves it) on every notification, every
``poll_interval``, and sooner, backing off from ``held_back_retry``, while a
notification's events are held back by an older transaction still running.

It never dies of a database or driver error: any exception (a lost
connection, an asyncpg protocol-state error mid-outage, a timeout) is logged
once per outage, reported through ``on_lost``, and followed by a reconnect
with exponential backoff that resumes from the cursor, gap-free. The only
error that leaves :meth:`batches` is :class:`ResyncRequiredError`: the cursor
is older than the feed's retention (or ahead of its head), and only the
consumer knows how to start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from omninode_bridge.errors import RegistryUnavailableError, ResyncRequiredError
from omninode_bridge.models import ChangeEvent
from omninode_bridge.services.change_feed import CHANNEL, ChangeFeed
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.sql import load_queries

__all__ = ["FOLLOWER_APPLICATION_NAME", "FeedFollower", "FollowTuning"]

if TYPE_CHECKING:
    from omninode_bridge.services.postgres_client import PooledConnection

logger = logging.getLogger(__name__)

Q = load_queries("change_feed.sql")
FOLLOWER_APPLICATION_NAME = "omninode-bridge change feed"  # as set by Q["mark_follower"]


@dataclass(frozen=True, slots=True)
class FollowTuning:
    """Intervals of a follower, in seconds (the defaults suit production)."""

    batch_size: int = 500
    poll_interval: float = 1.0
    held_back_retry: float = 0.01  # first re-read when a NOTIFY's events are held back
    reconnect_min: float = 0.05
    # The backoff's cap is how late following resumes once the database is back (a
    # failover: the promoted primary takes writes; the feed waits up to this long).
    reconnect_max: float = 0.5


class _Signals:
    """What wakes the loop: a NOTIFY, or the end of the listening connection."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.announced = False  # a NOTIFY came since the last read
        self.lost = False

    def notified(self, *_: Any) -> None:
        self.announced = True
        self.wake.set()

    def terminated(self, *_: Any) -> None:
        self.lost = True
        self.wake.set()


class FeedFollower:
    """Follows the change feed from ``cursor`` and survives every outage.

    ``on_lost(exc)`` is called when following stops (once per outage, before
    the first retry); ``on_recovered()`` once a read succeeds again (and after
    the first read). Both run on the event loop and must not block or raise.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        cursor: str | None,
        *,
        tuning: FollowTuning | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
        name: str = "change feed",
    ) -> None:
        self.feed = feed
        self.cursor = cursor
        self.tuning = tuning if tuning is not None else FollowTuning()
        self.on_lost = on_lost
        self.on_recovered = on_recovered
        self.name = name
        self.following = False
        self.lost_since: float | None = None  # monotonic time following stopped
        self.last_error: BaseException | None = None
        self.reconnects = 0

    async def batches(self) -> AsyncIterator[list[ChangeEvent]]:
        """Non-empty batches of events after the cursor, in feed order, forever; each ends
        with the last event of a transaction (see :meth:`_read`).

        The cursor advances past a batch when the consumer asks for the next
        one. Raises ResyncRequiredError only; every other error is retried.
        """
        delay = self.tuning.reconnect_min
        while True:
            try:
                async for events in self._follow_once():
                    delay = self.tuning.reconnect_min
                    yield events
                    self.cursor = events[-1].cursor
            except ResyncRequiredError:
                self.following = False
                raise
            except Exception as exc:  # any driver error: report, back off, resume
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.tuning.reconnect_max)

    def _lost(self, exc: BaseException) -> None:
        self.last_error = exc
        self.reconnects += 1
        if self.lost_since is not None:
            logger.debug("%s: still not following (%r)", self.name, exc)
            return
        self.following = False
        self.lost_since = time.monotonic()
        if isinstance(exc, RegistryUnavailableError):
            logger.warning("%s: lost the database (%s); reconnecting", self.name, exc)
        else:
            logger.error("%s: following failed; reconnecting", self.name, exc_info=exc)
        if self.on_lost is not None:
            self.on_lost(exc)

    def _recovered(self) -> None:
        was_lost, self.lost_since = self.lost_since, None
        self.following = True
        self.last_error = None
        if was_lost is not None:
            logger.info(
                "%s: following again after %.1fs, from %s",
                self.name,
                time.monotonic() - was_lost,
                self.cursor,
            )
        if self.on_recovered is not None:
            self.on_recovered()

    async def _read(self, conn: PooledConnection) -> tuple[list[ChangeEvent], bool]:
        """The events after the cursor, ``batch_size`` of them and then the rest of the last
        one's transaction; and whether more may be readable at once.

        Consumers show readers their state between two batches, and the Consul index
        is a transaction id: a reader that saw half of a transaction under its id
        would block on that id while the other half applied. So a batch ends with a
        transaction (one larger than ``batch_size`` comes whole, in one batch).
        """
        size = self.tuning.batch_size
        events = await self.feed.changes(self.cursor, size, conn=conn)
        if len(events) < size:  # a read sees whole transactions: all of it was read
            return events, False
        txid = FeedPosition.parse(events[-1].cursor).txid
        while True:
            more = await self.feed.changes(events[-1].cursor, size, conn=conn)
            rest = list(takewhile(lambda e: FeedPosition.parse(e.cursor).txid == txid, more))
            events.extend(rest)
            if len(rest) < size:
                return events, True

    async def _follow_once(self) -> AsyncIterator[list[ChangeEvent]]:
        """One connection's worth of following; raises when the connection is lost."""
        signals = _Signals()
        tuning = self.tuning
        retry = tuning.held_back_retry
        # LISTEN and the connection's name are session state: reset on the way back.
        async with self.feed.client.acquire(reset=True) as conn:
            conn.add_termination_listener(signals.terminated)
            try:
                await conn.fetchval(Q["mark_follower"])
                await conn.add_listener(CHANNEL, signals.notified)
                first = True
                held = False  # announced events not readable yet
                while True:
                    if signals.lost or conn.is_closed():
                        raise RegistryUnavailableError(
                            "the change feed's LISTEN connection was closed"
                        )
                    signals.wake.clear()
                    announced, signals.announced = signals.announced, False
                    events, full = await self._read(conn)
                    if first:
                        first = False
                        self._recovered()
                    if events:
                        yield events
                    if full:
                        continue
                    held = not events and (held or announced)
                    if held:
                        # An older transaction still runs and holds the announced
                        # events back: look again soon, backing off to the poll.
                        timeout, retry = retry, min(retry * 2, tuning.poll_interval)
                    else:
                        timeout, retry = tuning.poll_interval, tuning.held_back_retry
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
                    # a cancellation that lands as the event fires.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await signals.wake.wait()
            finally:
                try:
                    conn.remove_termination_listener(signals.terminated)
                    if not conn.is_closed():
                        await conn.remove_listener(CHANNEL, signals.notified)
                except Exception as exc:  # cleanup of a connection that failed
                    # The connection died (or is dying: asyncpg may report a
                    # protocol state error mid-shutdown). Its callbacks are gone
                    # or harmless, and the pool resets or discards it.
                    logger.debug("%s: listener cleanup on a lost connection: %r", self.name, exc)
