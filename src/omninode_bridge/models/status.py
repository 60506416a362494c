"""A registration with its health now: what ``GET /v1/tools/{id}`` answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from omninode_bridge.models.registration import ModelToolRegistration
from omninode_bridge.models.timestamps import UtcTimestamp, to_utc

__all__ = ["ModelToolRegistrationWithHealth", "ToolHealthSummary"]


class ToolHealthSummary(BaseModel):
    """Heartbeat freshness (database clock, the TTL) beside the active checks' verdict."""

    status: Literal["healthy", "stale", "critical"] = Field(
        description="critical: failing active checks; stale: no heartbeat within the TTL."
    )
    heartbeat_fresh: bool = Field(description="The last heartbeat is within TOOLREG_TTL_SECONDS.")
    check_status: Literal["passing", "critical", "unknown"] = Field(
        description="The anti-flap verdict of the active health checks (unknown: never checked)."
    )
    check_since: UtcTimestamp | None = Field(
        default=None, description="When the check status last changed."
    )
    last_checked_at: UtcTimestamp | None = None


class ModelToolRegistrationWithHealth(ModelToolRegistration):
    """A stored registration and its health now."""

    health: ToolHealthSummary

    @classmethod
    def from_health_row(cls, row: Any) -> ModelToolRegistrationWithHealth:
        """From a registration row joined with ``fresh``, ``check_status``, ``check_changed_at``
        and ``last_checked_at`` (see ``get_registration_with_health``)."""
        fresh = bool(row["fresh"])
        check = row["check_status"] or "unknown"
        status = "critical" if check == "critical" else ("healthy" if fresh else "stale")
        changed, checked = row["check_changed_at"], row["last_checked_at"]
        summary = ToolHealthSummary(
            status=status,
            heartbeat_fresh=fresh,
            check_status=check,
            check_since=to_utc(changed) if changed is not None and checked is not None else None,
            last_checked_at=to_utc(checked) if checked is not None else None,
        )
        base = ModelToolRegistration.from_row(row)
        return cls.model_construct(**base.__dict__, health=summary)
