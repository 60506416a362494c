"""The change feed: every create, update and delete, readable from a cursor.

Events are written by the repository's statements in the same transaction as
the change, and announced with ``NOTIFY toolreg_changes``. Positions are
``(txid, seq)`` pairs and a reader only sees events of transactions older than
every transaction still running, so that a reader resuming from a cursor
never misses an event and never sees one twice, even when transactions commit
out of order. The price: a long-running transaction anywhere in the cluster
holds back the feed until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from omninode_bridge.errors import ResyncRequiredError, ValidationFailedError
from omninode_bridge.models import ChangeEvent, ChangeKind, ModelToolRegistration
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries

__all__ = ["CHANNEL", "ChangeFeed", "event_from_row"]

Q = load_queries("change_feed.sql")
CHANNEL = "toolreg_changes"
MAX_BATCH = 10_000


def event_from_row(row: asyncpg.Record) -> ChangeEvent:
    """A change event from a row of ``tool_registration_events`` (txid as text)."""
    payload = row["registration"]
    return ChangeEvent.model_construct(
        cursor=f"{row['txid']}-{row['seq']}",
        kind=ChangeKind(row["kind"]),
        tool_id=row["tool_id"],
        registration_id=row["registration_id"],
        occurred_at=to_utc(row["occurred_at"]),
        registration=ModelToolRegistration.model_validate(payload) if payload else None,
        reason=row["reason"],
    )


class ChangeFeed:
    """Read and follow the registry's change events."""

    def __init__(self, postgres_client: PostgresClient) -> None:
        self.client = postgres_client

    async def _check_horizon(self, position: FeedPosition, cursor: str | None) -> None:
        row = await self.client.fetchrow(Q["horizon"])
        assert row is not None  # the migration inserts the one row
        horizon = FeedPosition(int(row["txid"]), int(row["seq"]))
        if position < horizon:
            where = f"cursor {cursor!r}" if cursor else "the start of the feed"
            raise ResyncRequiredError(
                f"{where} is older than the change feed's retention (pruned through "
                f"{horizon}); re-read the registry, then follow from head_cursor()"
            )

    async def changes(self, since_cursor: str | None = None, limit: int = 500) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``since_cursor`` (``None``: from the oldest kept), in order.

        Raises ResyncRequiredError when events after the cursor were already
        pruned, ValidationFailedError for a malformed cursor or limit.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
            raise ValidationFailedError([("limit", f"must be an integer from 1 to {MAX_BATCH}")])
        position = FeedPosition.parse(since_cursor)
        await self._check_horizon(position, since_cursor)
        rows = await self.client.fetch(Q["changes_since"], str(position.txid), position.seq, limit)
        return [event_from_row(row) for row in rows]

    async def head_cursor(self) -> str:
        """The cursor of the newest event a reader can see now: follow from here for "new only"."""
        row = await self.client.fetchrow(Q["head"])
        if row is None:
            row = await self.client.fetchrow(Q["horizon"])
            assert row is not None
        return str(FeedPosition(int(row["txid"]), int(row["seq"])))

    async def prune(self, retention_seconds: float) -> int:
        """Delete events older than ``retention_seconds``; returns how many went."""
        if retention_seconds <= 0:
            raise ValidationFailedError([("retention_seconds", "must be positive")])
        return int(await self.client.fetchval(Q["prune"], float(retention_seconds)))

    async def watch(
        self, since_cursor: str | None = None, *, poll_interval: float = 1.0, batch_size: int = 500
    ) -> AsyncIterator[ChangeEvent]:
        """Replay the events after ``since_cursor``, then follow new ones as they commit.

        Listens on a pooled connection for NOTIFY and also polls every
        ``poll_interval`` seconds (a notified event may still wait for an older
        transaction to end). Ends only when the caller stops iterating or the
        database is lost (RegistryUnavailableError).
        """
        cursor = since_cursor
        FeedPosition.parse(cursor)
        wake = asyncio.Event()

        def _notified(*_: Any) -> None:
            wake.set()

        async with self.client.acquire() as conn:
            await conn.add_listener(CHANNEL, _notified)
            try:
                held_back = 0.0  # > 0 while a notified event waits for an older transaction
                while True:
                    notified = wake.is_set()
                    wake.clear()
                    events = await self.changes(cursor, batch_size)
                    for event in events:
                        cursor = event.cursor
                        yield event
                    if len(events) == batch_size:
                        continue
                    if events:
                        held_back = 0.0
                    elif notified or held_back:
                        # Notified, yet nothing readable: an older transaction still
                        # runs. Look again soon rather than at the next poll.
                        held_back = min(poll_interval, max(0.005, held_back * 2))
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
                    # a cancellation that lands as the event fires.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(held_back or poll_interval):
                            await wake.wait()
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(CHANNEL, _notified)
