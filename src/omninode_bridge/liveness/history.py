"""Health now and in the past: current check state, a tool's history, routability at a time.

History is the change feed itself: registrations (``created``, ``updated``,
``deleted``), heartbeat freshness (``stale``, ``healthy``) and active checks
(``critical``, ``passing``), kept for ``TOOLREG_EVENT_RETENTION_SECONDS``.

Routable means: registered, listing the operation under
``capabilities.operations`` with an endpoint for it, heartbeat within the TTL,
and not ``critical``. :meth:`HealthHistory.routable_at` rebuilds that for a
past moment. Its precision: a stale period is dated exactly (from the last
heartbeat plus the TTL) once a sweep has seen it; the return to healthy is
dated at the newest heartbeat the sweep saw, the latest moment it can have
happened (so a tool may read unroutable slightly longer than it was, never the
reverse); a stale period shorter than the sweep interval that ended before a
sweep saw it leaves no trace; check transitions are dated when the registry
decided them. After the current registration's newest heartbeat, freshness
is computed from the row itself and is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from omninode_bridge.errors import ValidationFailedError
from omninode_bridge.liveness.checker import CheckStatus
from omninode_bridge.models import ChangeEvent, ModelToolRegistration
from omninode_bridge.models.timestamps import UtcDateTime, to_utc
from omninode_bridge.services.change_feed import event_from_row
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries
from omninode_bridge.services.tool_registration_repository import could_be_registered

__all__ = ["HealthHistory", "ToolHealth"]

Q = load_queries("liveness.sql")
DISCOVERY_SQL = load_queries("discovery.sql")
MAX_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class ToolHealth:
    """A registered tool's health now.

    ``fresh`` is computed at read time (heartbeat within the TTL);
    ``heartbeat_status`` is what the last sweep recorded.
    """

    tool_id: str
    health_endpoint: str | None
    last_heartbeat: UtcDateTime | None
    fresh: bool
    heartbeat_status: str
    heartbeat_changed_at: UtcDateTime | None
    check_status: CheckStatus
    consecutive_failures: int
    consecutive_successes: int
    last_checked_at: UtcDateTime | None
    last_latency_ms: float | None
    last_error: str | None
    check_changed_at: UtcDateTime | None

    @property
    def routable(self) -> bool:
        """Fresh and not critical (the operation and its endpoint aside)."""
        return self.fresh and self.check_status is not CheckStatus.CRITICAL


def _utc(value: datetime | None) -> UtcDateTime | None:
    return to_utc(value) if value is not None else None


def _moment(at: datetime) -> datetime:
    if not isinstance(at, datetime):
        raise ValidationFailedError([("at", "must be a datetime")])
    return at.astimezone() if at.tzinfo is None else at  # naive means local time


class HealthHistory:
    """Queries over the health state and the change feed; ``ttl_seconds`` defines fresh."""

    def __init__(self, client: PostgresClient, ttl_seconds: float) -> None:
        self.client = client
        self.ttl_seconds = float(ttl_seconds)

    async def history(self, tool_id: str, limit: int = 1000) -> list[ChangeEvent]:
        """The events of ``tool_id`` kept in the feed, oldest first (by when they happened).

        Kept after the tool is removed, until pruned. An empty list means no
        event is kept for it.
        """
        if not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise ValidationFailedError([("limit", f"must be an integer from 1 to {MAX_HISTORY}")])
        if not could_be_registered(tool_id):
            return []
        return [
            event_from_row(row)
            for row in await self.client.fetch(Q["tool_history"], tool_id, limit)
        ]

    async def get_health(self, tool_id: str) -> ToolHealth | None:
        """The health of ``tool_id`` now; ``None`` when it is not registered."""
        if not could_be_registered(tool_id):
            return None
        row = await self.client.fetchrow(Q["get_health"], tool_id, self.ttl_seconds)
        if row is None:
            return None
        return ToolHealth(
            tool_id=row["tool_id"],
            health_endpoint=row["health_endpoint"],
            last_heartbeat=_utc(row["last_heartbeat"]),
            fresh=bool(row["fresh"]),
            heartbeat_status=row["heartbeat_status"],
            heartbeat_changed_at=_utc(row["heartbeat_changed_at"]),
            check_status=CheckStatus(row["check_status"]),
            consecutive_failures=row["failures"],
            consecutive_successes=row["successes"],
            last_checked_at=_utc(row["last_checked_at"]),
            last_latency_ms=row["last_latency_ms"],
            last_error=row["last_error"],
            check_changed_at=_utc(row["check_changed_at"]),
        )

    async def critical_tool_ids(self) -> set[str]:
        """The tools whose active checks say ``critical`` now (never routable)."""
        # The discovery index's query: one definition of "held critical".
        rows = await self.client.fetch(DISCOVERY_SQL["critical_tool_ids"])
        return {row["tool_id"] for row in rows}

    async def routable_tools(self, operation: str) -> list[ModelToolRegistration]:
        """Tools routable for ``operation`` now (database clock), ordered by tool_id."""
        if not isinstance(operation, str) or not operation:
            raise ValidationFailedError([("operation", "must be a non-empty string")])
        rows = await self.client.fetch(Q["routable_tools"], operation, self.ttl_seconds)
        return [ModelToolRegistration.from_row(row) for row in rows]

    async def routable_at(self, operation: str, at: datetime) -> list[str]:
        """The ids of tools that were routable for ``operation`` at ``at``, ordered.

        Rebuilt from the change feed (see the module docstring for its
        precision); a naive ``at`` is read as local time. A moment older than
        the feed's retention is answered from what is left: registrations that
        changed after it are taken at their oldest kept version.
        """
        if not isinstance(operation, str) or not operation:
            raise ValidationFailedError([("operation", "must be a non-empty string")])
        rows = await self.client.fetch(Q["routable_at"], operation, _moment(at), self.ttl_seconds)
        return [row["tool_id"] for row in rows]
