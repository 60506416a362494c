"""The ONEX node types a tool can declare."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NodeType"]


class NodeType(StrEnum):
    """One of the four ONEX node types; parsing is case-insensitive, storage lower-case."""

    EFFECT = "effect"
    COMPUTE = "compute"
    REDUCER = "reducer"
    ORCHESTRATOR = "orchestrator"

    @classmethod
    def _missing_(cls, value: object) -> NodeType | None:
        if isinstance(value, str):
            lowered = value.strip().lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None
