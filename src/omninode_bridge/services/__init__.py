"""Services: the database client and everything built on it."""

from __future__ import annotations

from omninode_bridge.services.postgres_client import PoolMetrics, PostgresClient

__all__ = ["PoolMetrics", "PostgresClient"]
