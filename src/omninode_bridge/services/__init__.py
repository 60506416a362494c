"""Services: the database client and everything built on it."""

from __future__ import annotations

from omninode_bridge.services.change_feed import ChangeFeed
from omninode_bridge.services.discovery import ToolDiscoveryService
from omninode_bridge.services.postgres_client import PoolMetrics, PostgresClient
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository

__all__ = [
    "ChangeFeed",
    "PoolMetrics",
    "PostgresClient",
    "ToolDiscoveryService",
    "ToolRegistrationRepository",
]
