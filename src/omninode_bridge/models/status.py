"""A registration with its health now: what ``GET /v1/tools/{id}`` answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from omninode_bridge.models.registration import ModelToolRegistration
from omninode_bridge.models.timestamps import UtcTimestamp

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
    last_checked_at: UtcTimestamp | None = Field(
        default=None, description="When an active check last ran; null: never."
    )


class ModelToolRegistrationWithHealth(ModelToolRegistration):
    """A stored registration and its health now.

    PostgreSQL decides the health and writes this JSON itself
    (``get_registration_with_health`` in tool_registrations.sql).
    """

    health: ToolHealthSummary = Field(description="Its health now.")
