"""omninode_bridge: a PostgreSQL-backed tool registry.

Tools register a node type, capabilities, endpoints and metadata, keep
themselves alive with heartbeats, and are discovered and called by capability.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
