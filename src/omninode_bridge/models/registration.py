"""The usage guide's three registration models.

``ModelToolRegistrationCreate`` and ``ModelToolRegistrationUpdate`` validate
everything before any write; ``ModelToolRegistration`` is a stored row, with
its real ``id`` and timezone-aware UTC timestamps.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omninode_bridge.models.fields import (
    CAPABILITIES_DESCRIPTION,
    ENDPOINTS_DESCRIPTION,
    HEALTH_ENDPOINT_DESCRIPTION,
    METADATA_DESCRIPTION,
    NODE_TYPE_DESCRIPTION,
    TOOL_ID_DESCRIPTION,
    Endpoints,
    HealthUrl,
    JsonObject,
    ToolId,
    check_registration_size,
)
from omninode_bridge.models.node_type import NodeType
from omninode_bridge.models.timestamps import UtcTimestamp, to_utc, utc_now

__all__ = [
    "ModelToolRegistration",
    "ModelToolRegistrationCreate",
    "ModelToolRegistrationUpdate",
]

_STRICT = ConfigDict(extra="forbid", validate_default=True)


class ModelToolRegistrationCreate(BaseModel):
    """A tool's registration as submitted: validated before it reaches the database."""

    model_config = _STRICT

    tool_id: ToolId = Field(description=TOOL_ID_DESCRIPTION)
    node_type: NodeType = Field(description=NODE_TYPE_DESCRIPTION)
    capabilities: JsonObject = Field(default_factory=dict, description=CAPABILITIES_DESCRIPTION)
    endpoints: Endpoints = Field(default_factory=dict, description=ENDPOINTS_DESCRIPTION)
    metadata: JsonObject = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    health_endpoint: HealthUrl | None = Field(default=None, description=HEALTH_ENDPOINT_DESCRIPTION)

    @model_validator(mode="after")
    def _bounded(self) -> ModelToolRegistrationCreate:
        check_registration_size(
            capabilities=self.capabilities, endpoints=self.endpoints, metadata=self.metadata
        )
        return self


_KEEP = " Left out: unchanged; null is refused."
_REPLACED = " Replaced whole." + _KEEP


class ModelToolRegistrationUpdate(BaseModel):
    """A partial update: only the fields that are set change.

    JSONB fields are replaced as a whole. ``health_endpoint=None`` clears the
    health endpoint; the other fields cannot be set to ``None``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=False)

    node_type: NodeType | None = Field(default=None, description=NODE_TYPE_DESCRIPTION + _KEEP)
    capabilities: JsonObject | None = Field(
        default=None, description=CAPABILITIES_DESCRIPTION + _REPLACED
    )
    endpoints: Endpoints | None = Field(default=None, description=ENDPOINTS_DESCRIPTION + _REPLACED)
    metadata: JsonObject | None = Field(default=None, description=METADATA_DESCRIPTION + _REPLACED)
    health_endpoint: HealthUrl | None = Field(
        default=None, description=HEALTH_ENDPOINT_DESCRIPTION + " Left out: unchanged."
    )

    @field_validator("node_type", "capabilities", "endpoints", "metadata", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for fields given explicitly (defaults are not validated here).
        if value is None:
            raise ValueError("cannot be null (leave the field out to keep its current value)")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> ModelToolRegistrationUpdate:
        # The fields it sets; each one alone is bounded by the same limit.
        check_registration_size(
            capabilities=self.capabilities, endpoints=self.endpoints, metadata=self.metadata
        )
        return self

    @property
    def is_empty(self) -> bool:
        """True when the update sets no field (and so writes nothing)."""
        return not self.model_fields_set


class ModelToolRegistration(BaseModel):
    """A stored registration: the row's real ``id`` and UTC timestamps."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    id: UUID = Field(description="The registration row's id.")
    tool_id: str = Field(description=TOOL_ID_DESCRIPTION)
    node_type: NodeType = Field(description=NODE_TYPE_DESCRIPTION)
    capabilities: dict[str, Any] = Field(default_factory=dict, description=CAPABILITIES_DESCRIPTION)
    endpoints: dict[str, str] = Field(default_factory=dict, description=ENDPOINTS_DESCRIPTION)
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    health_endpoint: str | None = Field(default=None, description=HEALTH_ENDPOINT_DESCRIPTION)
    last_heartbeat: UtcTimestamp | None = Field(
        default=None, description="The last heartbeat (database clock, UTC); null: never."
    )
    # Nullable in the guide's schema; every write path of this package sets them.
    registered_at: UtcTimestamp | None = Field(
        default=None, description="When this registration was created (UTC)."
    )
    updated_at: UtcTimestamp | None = Field(
        default=None, description="When this registration last changed (UTC)."
    )

    @property
    def heartbeat_age_seconds(self) -> float | None:
        """Seconds since the last heartbeat by this process's clock; ``None`` if never."""
        if self.last_heartbeat is None:
            return None
        return (utc_now() - self.last_heartbeat).total_seconds()

    def is_healthy(self, max_age_seconds: float = 300) -> bool:
        """True when the last heartbeat is at most ``max_age_seconds`` old (local clock).

        The repository's ``get_healthy_tools`` uses the database clock instead.
        """
        age = self.heartbeat_age_seconds
        return age is not None and age <= max_age_seconds

    @classmethod
    def from_row(cls, row: Any) -> ModelToolRegistration:
        """Build from a trusted database row (validated on write) without re-validating.

        The hot path of every read: it fills the instance directly (what
        ``model_construct`` does, without its per-field bookkeeping).
        """
        model = cls.__new__(cls)
        capabilities = row["capabilities"]
        endpoints = row["endpoints"]
        metadata = row["metadata"]
        beat, registered, updated = row["last_heartbeat"], row["registered_at"], row["updated_at"]
        object.__setattr__(
            model,
            "__dict__",
            {
                "id": row["id"],
                "tool_id": row["tool_id"],
                "node_type": _NODE_TYPES[row["node_type"]],
                "capabilities": capabilities if capabilities is not None else {},
                "endpoints": endpoints if endpoints is not None else {},
                "metadata": metadata if metadata is not None else {},
                "health_endpoint": row["health_endpoint"],
                "last_heartbeat": to_utc(beat) if beat is not None else None,
                "registered_at": to_utc(registered) if registered is not None else None,
                "updated_at": to_utc(updated) if updated is not None else None,
            },
        )
        # One set shared by every model built here: it already holds every field,
        # so pydantic's only change to it (adding an assigned field) changes nothing.
        object.__setattr__(model, "__pydantic_fields_set__", _ALL_FIELDS_SET)
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", None)
        return model


_NODE_TYPES = {kind.value: kind for kind in NodeType}
_ALL_FIELDS_SET = set(ModelToolRegistration.model_fields)
