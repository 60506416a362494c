"""Full registrations for the callers that want one: a small LRU, else one query by id.

The index keeps routing facts only. ``discover_tool`` and ``routable_tools``
answer with :class:`ModelToolRegistration`, so the chosen tools' registrations
come from here: the change feed puts every registration it carries (the
recently changed ones), a miss reads the row by id. Either way the answer's
``last_heartbeat`` is the newest heartbeat the index knows, as when the index
held the models itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.discovery.pools import IndexedTool
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository

__all__ = ["RegistrationCache"]

_FETCH_CHUNK = 10_000  # ids per query when many registrations are asked for
_UNKNOWN = float("nan")  # equal to no deadline


class RegistrationCache:
    """Up to ``capacity`` registrations by tool id, least recently used dropped first."""

    def __init__(
        self, repository: ToolRegistrationRepository, ttl_seconds: float, capacity: int = 4096
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.repository = repository
        self.ttl_seconds = ttl_seconds
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        # tool_id -> (registration, the index deadline its last_heartbeat matches; NaN: unknown)
        self._entries: OrderedDict[str, tuple[ModelToolRegistration, float]] = OrderedDict()
        self._generation = 0  # counts the feed's puts and drops

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, registration: ModelToolRegistration) -> None:
        """The feed's newest version of a tool: remembered, replacing any older one."""
        self._generation += 1
        self._put(registration, _UNKNOWN)

    def _put(self, registration: ModelToolRegistration, expires_at: float) -> None:
        entries = self._entries
        entries[registration.tool_id] = (registration, expires_at)
        entries.move_to_end(registration.tool_id)
        if len(entries) > self.capacity:
            entries.popitem(last=False)

    def drop(self, tool_id: str) -> None:
        """Forget ``tool_id`` (deleted)."""
        self._generation += 1
        self._entries.pop(tool_id, None)

    def clear(self) -> None:
        """Forget everything (the index reloaded)."""
        self._generation += 1
        self._entries.clear()

    async def get(self, tool: IndexedTool) -> ModelToolRegistration | None:
        """``tool``'s registration with the index's newest heartbeat; ``None``: deleted meanwhile.

        Raises what the repository raises when the row must be read.
        """
        entry = self._entries.get(tool.tool_id)
        if entry is not None:
            self.hits += 1
            registration, stamped = entry
            if stamped == tool.expires_at:  # the common case: no datetime arithmetic
                self._entries.move_to_end(tool.tool_id)
                return registration
            fresh = self._with_heartbeat(registration, tool.expires_at)
            self._put(fresh, tool.expires_at)
            return fresh
        self.misses += 1
        generation = self._generation
        read = await self.repository.get_registration(tool.tool_id)
        if read is None:
            return None
        fresh = self._with_heartbeat(read, tool.expires_at)
        if generation == self._generation:  # else the feed may have put a newer version
            self._put(fresh, tool.expires_at)
        return fresh

    async def get_many(self, tools: Sequence[IndexedTool]) -> list[ModelToolRegistration]:
        """The registrations of ``tools`` in their order, leaving out those deleted meanwhile.

        Read in chunks of ids; not put in the cache (a long list would flush it).
        """
        found: dict[str, ModelToolRegistration] = {}
        missing = [t.tool_id for t in tools if t.tool_id not in self._entries]
        for start in range(0, len(missing), _FETCH_CHUNK):
            chunk = missing[start : start + _FETCH_CHUNK]
            found.update((r.tool_id, r) for r in await self.repository.get_registrations(chunk))
        out: list[ModelToolRegistration] = []
        for tool in tools:
            entry = self._entries.get(tool.tool_id)
            registration = entry[0] if entry is not None else found.get(tool.tool_id)
            if registration is not None:
                out.append(self._with_heartbeat(registration, tool.expires_at))
        return out

    def _with_heartbeat(
        self, registration: ModelToolRegistration, expires_at: float
    ) -> ModelToolRegistration:
        """``registration`` with ``last_heartbeat`` the index's (a copy when they differ)."""
        if expires_at == float("-inf"):
            return registration
        beat = expires_at - self.ttl_seconds
        known = registration.last_heartbeat
        if known is not None and abs(known.timestamp() - beat) < 1e-6:
            return registration
        return registration.model_copy(
            update={"last_heartbeat": to_utc(datetime.fromtimestamp(beat, UTC))}
        )
