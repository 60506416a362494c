"""Tool discovery and routing over a live in-memory index of the registry.

:class:`ToolDiscoveryService` is the entry point (also exported by
``omninode_bridge.services``). The pieces, one noun each: ``index`` (what is
routable now), ``pools`` (what it keeps and hands out per tool: routing facts
only), ``endpoints`` (URLs as shared templates), ``deadlines`` (the heap of
heartbeat deadlines), ``registrations`` (full registrations: an LRU, else one
query by id), ``sync`` (keeping the index current from the database),
``clock`` (database time), ``balancer`` (power of two choices), ``ejection``
(passive failure detection), ``calls`` (what an HTTP failure means),
``explain`` (why a tool is or is not routable), ``metrics``.
"""

from __future__ import annotations

from omninode_bridge.errors import IndexUnavailableError
from omninode_bridge.services.discovery.metrics import DiscoveryMetrics
from omninode_bridge.services.discovery.service import ToolDiscoveryService
from omninode_bridge.services.discovery.sync import DiscoveryTuning

__all__ = [
    "DiscoveryMetrics",
    "DiscoveryTuning",
    "IndexUnavailableError",
    "ToolDiscoveryService",
]
