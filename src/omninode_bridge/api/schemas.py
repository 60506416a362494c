"""Request and response bodies of the HTTP API (beyond the registration models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omninode_bridge.models import NodeType
from omninode_bridge.models.fields import ToolId
from omninode_bridge.models.query import MAX_PAGE_SIZE

__all__ = ["HeartbeatBatch", "HeartbeatBatchResult", "SearchRequest", "Status"]


class HeartbeatBatch(BaseModel):
    """Heartbeat many tools in one request."""

    model_config = ConfigDict(extra="forbid")

    # Each id is checked like a registration's tool_id: a malformed one (a lone
    # surrogate, a space) is a 422 naming its index, and nothing is written.
    tool_ids: list[ToolId] = Field(
        min_length=1,
        max_length=10_000,
        description="1-10000 tool_ids (duplicates count once); each checked like a "
        "registration's tool_id.",
    )


class HeartbeatBatchResult(BaseModel):
    """How many heartbeats were recorded, and which ids are not registered."""

    updated: int = Field(description="Heartbeats recorded.")
    unknown: list[str] = Field(description="The ids given that are not registered.")


class SearchRequest(BaseModel):
    """``POST /v1/tools/search``: every filter optional, combined with AND."""

    model_config = ConfigDict(extra="forbid")

    capabilities: dict[str, Any] | None = Field(
        default=None, description="JSONB containment: a list means 'contains all of these'."
    )
    node_type: NodeType | None = Field(default=None, description="Only tools of this node type.")
    healthy_within_seconds: float | None = Field(
        default=None, gt=0, description="Only tools that heartbeated within this many seconds."
    )
    where: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="SQL/JSON path predicate on capabilities, e.g. `$.max_file_size >= 5000000`.",
    )
    limit: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE, description="Tools per page at most.")
    cursor: str | None = Field(
        default=None, max_length=1024, description="The previous page's `next_cursor`."
    )


class Status(BaseModel):
    """``/health`` and ``/ready``."""

    status: str = Field(description="ok (/health); ready or unavailable (/ready).")
    detail: dict[str, Any] | None = Field(
        default=None, description="/ready: the database, change feed and discovery index."
    )
