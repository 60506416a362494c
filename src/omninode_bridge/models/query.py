"""Query, page and change-feed types."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omninode_bridge.models.fields import JsonObject, check_unicode
from omninode_bridge.models.node_type import NodeType
from omninode_bridge.models.registration import ModelToolRegistration
from omninode_bridge.models.timestamps import UtcTimestamp

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "ModelToolRegistrationPage",
    "ToolQuery",
]

MAX_PAGE_SIZE = 1000


class ToolQuery(BaseModel):
    """Filters of ``find_tools``; every one optional, all of them combined with AND.

    ``capabilities`` is JSONB containment (a list means "contains all of
    these"); ``where`` is a SQL/JSON path predicate on capabilities, such as
    ``$.max_file_size >= 5000000``; ``cursor`` is the opaque ``next_cursor`` of
    the previous page.
    """

    model_config = ConfigDict(extra="forbid")

    capabilities: JsonObject | None = None
    node_type: NodeType | None = None
    max_age_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    where: str | None = Field(default=None, min_length=1, max_length=4096)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(default=None, max_length=1024)

    @field_validator("where")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return check_unicode(value)


class ModelToolRegistrationPage(BaseModel):
    """One page of registrations; ``next_cursor`` is ``None`` on the last page."""

    items: list[ModelToolRegistration] = Field(description="The page's tools, by tool_id.")
    next_cursor: str | None = Field(
        default=None, description="Pass back as `cursor` for the next page; null on the last."
    )


class ChangeKind(StrEnum):
    """What happened to a registration.

    The first three change the registration itself (``registration`` holds
    the row). The other four are liveness transitions decided by the leader's
    passes and carry no registration: ``critical`` (active checks failed
    enough times in a row: not routable) and ``passing`` (no longer critical);
    ``stale`` (the heartbeat is older than the TTL; ``occurred_at`` is the
    moment it expired) and ``healthy`` (heartbeating again).
    """

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CRITICAL = "critical"
    PASSING = "passing"
    STALE = "stale"
    HEALTHY = "healthy"


class ChangeEvent(BaseModel):
    """One entry of the change feed.

    ``cursor`` is opaque and strictly increasing in feed order; pass it back to
    read what came after. ``registration`` is the row after the change (the
    row before it, for ``deleted``; ``None`` for the liveness transitions
    ``critical``, ``passing``, ``stale`` and ``healthy``).
    """

    cursor: str = Field(description="Opaque, increasing in feed order: resume after it.")
    kind: ChangeKind = Field(description="What happened.")
    tool_id: str = Field(description="The tool it happened to.")
    registration_id: UUID | None = Field(
        default=None, description="The registration row's id, when there is one."
    )
    occurred_at: UtcTimestamp = Field(description="When it happened (database clock, UTC).")
    registration: ModelToolRegistration | None = Field(
        default=None,
        description="The row after the change (before it, for deleted); null for liveness "
        "transitions.",
    )
    reason: str | None = Field(
        default=None, description="Why, in words (who deleted it, which check failed...)."
    )

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
