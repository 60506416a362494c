"""Services: the database client and everything built on it.

``ToolDiscoveryService`` (which brings httpx) is imported on first use, so
that commands that never route a call start quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.postgres_client import PoolMetrics, PostgresClient
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository

if TYPE_CHECKING:
    from omninode_bridge.services.discovery import ToolDiscoveryService

__all__ = [
    "ChangeFeed",
    "PoolMetrics",
    "PostgresClient",
    "ToolDiscoveryService",
    "ToolRegistrationRepository",
]


def __getattr__(name: str) -> Any:
    if name == "ToolDiscoveryService":
        from omninode_bridge.services.discovery import ToolDiscoveryService

        return ToolDiscoveryService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
