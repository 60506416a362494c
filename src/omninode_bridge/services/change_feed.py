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

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg

from omninode_bridge.errors import ResyncRequiredError, ValidationFailedError
from omninode_bridge.models import ChangeEvent, ChangeKind, ModelToolRegistration
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.db_errors import translating
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries

__all__ = ["CHANNEL", "ChangeFeed", "event_from_row"]

if TYPE_CHECKING:
    from omninode_bridge.services.postgres_client import PooledConnection

Q = load_queries("change_feed.sql")
RESYNC_HINT = (
    "re-read the registry, then follow from the feed's head (over HTTP: reconnect without "
    "'since' and Last-Event-ID; in Python: ChangeFeed.head_cursor())"
)
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

    async def changes(
        self,
        since_cursor: str | None = None,
        limit: int = 500,
        *,
        conn: PooledConnection | None = None,
    ) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``since_cursor`` (``None``: from the oldest kept), in order.

        Raises ResyncRequiredError when events after the cursor were already
        pruned, or when the cursor is ahead of the feed's head (a cursor of
        another database, or of this one before it was re-created);
        ValidationFailedError for a malformed cursor or limit. ``conn`` reads
        on that connection instead of one from the pool.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
            raise ValidationFailedError([("limit", f"must be an integer from 1 to {MAX_BATCH}")])
        position = FeedPosition.parse(since_cursor)
        if conn is None:
            async with self.client.acquire() as pooled:
                return await self._read(pooled, position, since_cursor, limit)
        with translating(self.client.where):
            return await self._read(conn, position, since_cursor, limit)

    async def _read(
        self, conn: PooledConnection, position: FeedPosition, cursor: str | None, limit: int
    ) -> list[ChangeEvent]:
        row = await conn.fetchrow(Q["horizon"])
        assert row is not None  # the migration inserts the one row
        horizon = FeedPosition(int(row["txid"]), int(row["seq"]))
        if position < horizon:
            where = f"cursor {cursor!r}" if cursor else "the start of the feed"
            raise ResyncRequiredError(
                f"{where} is older than the change feed's retention (pruned through "
                f"{horizon}); {RESYNC_HINT}"
            )
        rows = await conn.fetch(Q["changes_since"], str(position.txid), position.seq, limit)
        if not rows and position > horizon:
            top = await conn.fetchrow(Q["head"])
            head = max(horizon, FeedPosition(int(top["txid"]), int(top["seq"])) if top else horizon)
            if position > head:
                raise ResyncRequiredError(
                    f"cursor {cursor!r} is ahead of the change feed's head ({head}): "
                    f"it belongs to another database or to this one before it was re-created; "
                    f"{RESYNC_HINT}"
                )
        return [event_from_row(r) for r in rows]

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

        Follows with a :class:`~omninode_bridge.services.feed_follower.FeedFollower`:
        a lost database is waited out (reconnecting with backoff) and following
        resumes gap-free. Ends only when the caller stops iterating, or with
        ResyncRequiredError when the cursor is older than the retention.
        """
        # Imported here: the follower module builds on this one.
        from omninode_bridge.services.feed_follower import FeedFollower, FollowTuning

        FeedPosition.parse(since_cursor)
        tuning = FollowTuning(batch_size=batch_size, poll_interval=poll_interval)
        follower = FeedFollower(self, since_cursor, tuning=tuning, name="ChangeFeed.watch")
        async for batch in follower.batches():
            for event in batch:
                yield event
