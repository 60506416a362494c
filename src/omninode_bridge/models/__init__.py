"""Pydantic v2 models: the guide's three registration models and the query/page/event types."""

from __future__ import annotations

from omninode_bridge.models.node_type import NodeType
from omninode_bridge.models.query import (
    ChangeEvent,
    ChangeKind,
    ModelToolRegistrationPage,
    ToolQuery,
)
from omninode_bridge.models.registration import (
    ModelToolRegistration,
    ModelToolRegistrationCreate,
    ModelToolRegistrationUpdate,
)
from omninode_bridge.models.timestamps import UtcDateTime

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "ModelToolRegistration",
    "ModelToolRegistrationCreate",
    "ModelToolRegistrationPage",
    "ModelToolRegistrationUpdate",
    "NodeType",
    "ToolQuery",
    "UtcDateTime",
]
