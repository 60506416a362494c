"""Bridges built from settings: what ``toolreg serve`` runs beside the HTTP API."""

from __future__ import annotations

from omninode_bridge.autodiscovery.bridge import DiscoveryBridge, RemovalMode
from omninode_bridge.autodiscovery.etcd import EtcdSource, parse_endpoints
from omninode_bridge.autodiscovery.metrics import BridgeMetrics
from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.settings import Settings

__all__ = ["bridges_from_settings"]


def bridges_from_settings(
    settings: Settings,
    repository: ToolRegistrationRepository,
    *,
    metrics: BridgeMetrics | None = None,
    mode: RemovalMode = RemovalMode.DELETE,
) -> list[DiscoveryBridge]:
    """One bridge per configured source: etcd when TOOLREG_ETCD_ENDPOINTS is set, else none.

    Raises ConfigurationError (naming the variable) for malformed endpoints or
    prefix. Run each with ``asyncio.create_task(bridge.run())`` and cancel the
    task to stop it.
    """
    bridges: list[DiscoveryBridge] = []
    if settings.etcd_endpoints:
        source = EtcdSource(parse_endpoints(settings.etcd_endpoints), settings.etcd_prefix)
        bridges.append(
            DiscoveryBridge(
                source,
                repository,
                mode=mode,
                ttl_seconds=settings.ttl_seconds,
                max_json_bytes=settings.max_json_bytes,
                metrics=metrics,
            )
        )
    return bridges
