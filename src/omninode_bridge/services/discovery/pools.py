"""What the index stores per tool, and what it hands out: routing facts, no registration.

Per tool the index keeps only what routing needs, in columns indexed by a
*slot* (a small int): the tool id, the declared operations (interned
strings), the routed ones (those with an endpoint), the endpoints in compact
form (:mod:`~omninode_bridge.services.discovery.endpoints`), the heartbeat
deadline, and the tool's position in each per-operation list. The full
registration is not kept: :mod:`~omninode_bridge.services.discovery.registrations`
fetches it when a caller asks for one.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from omninode_bridge.services.discovery.endpoints import Endpoints, endpoint_of

__all__ = ["IndexedTool", "declared_operations"]


def declared_operations(operations: Any) -> tuple[str, ...]:
    """The operations ``capabilities.operations`` lists (strings in a list; anything else: none).

    Without repeats, in their order, interned: a million tools listing
    ``"read"`` share one string.
    """
    if not isinstance(operations, list):
        return ()
    intern = sys.intern
    return tuple(dict.fromkeys([intern(op) for op in operations if isinstance(op, str)]))


class IndexedTool(NamedTuple):
    """One tool as the index saw it when asked (a snapshot, made on demand).

    ``expires_at`` is the database time (epoch seconds) at which the newest
    known heartbeat ages past the TTL (``-inf``: never heartbeated);
    ``routed`` are the declared operations that have an endpoint.
    """

    tool_id: str
    operations: tuple[str, ...]
    routed: tuple[str, ...]
    expires_at: float
    endpoints: Endpoints

    def endpoint(self, operation: str) -> str | None:
        """The URL for ``operation``; ``None`` when the tool has none for it."""
        return endpoint_of(self.endpoints, self.tool_id, self.routed, operation)
