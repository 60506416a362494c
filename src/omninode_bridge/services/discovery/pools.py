"""What the index stores: one entry per registration, and the per-operation pools."""

from __future__ import annotations

from dataclasses import dataclass

from omninode_bridge.models import ModelToolRegistration

__all__ = ["IndexedTool", "Pool", "declared_operations"]


def declared_operations(registration: ModelToolRegistration) -> tuple[str, ...]:
    """The operations ``capabilities.operations`` lists (strings in a list; anything else: none).

    Without repeats, in their order. A tuple: tools list a few operations, and
    small tuples take a fraction of the memory of small sets.
    """
    operations = registration.capabilities.get("operations")
    if not isinstance(operations, list):
        return ()
    return tuple(dict.fromkeys(op for op in operations if isinstance(op, str)))


@dataclass(slots=True)
class IndexedTool:
    """One registration as the index holds it.

    ``expires_at`` is the database time (epoch seconds) at which the last known
    heartbeat ages past the TTL; ``routed`` are the declared operations that
    have an endpoint; ``pooled`` says whether the tool is routable now.
    """

    registration: ModelToolRegistration
    operations: tuple[str, ...]
    routed: tuple[str, ...]
    expires_at: float
    model_expires_at: float  # what registration.last_heartbeat says
    pooled: bool = False

    @property
    def tool_id(self) -> str:
        return self.registration.tool_id


class Pool:
    """A set of tool ids that can also be indexed at random (swap-remove)."""

    __slots__ = ("ids", "pos")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, tool_id: str) -> None:
        if tool_id not in self.pos:
            self.pos[tool_id] = len(self.ids)
            self.ids.append(tool_id)

    def discard(self, tool_id: str) -> None:
        index = self.pos.pop(tool_id, None)
        if index is None:
            return
        last = self.ids.pop()
        if last != tool_id:
            self.ids[index] = last
            self.pos[last] = index
