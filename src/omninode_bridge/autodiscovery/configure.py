"""Bridges built from settings: what ``toolreg serve`` runs beside the HTTP API."""

from __future__ import annotations

from omninode_bridge.autodiscovery.bridge import DiscoveryBridge, RemovalMode
from omninode_bridge.autodiscovery.consul import ConsulSource, parse_address
from omninode_bridge.autodiscovery.etcd import EtcdSource, parse_endpoints
from omninode_bridge.autodiscovery.metrics import BridgeMetrics
from omninode_bridge.autodiscovery.source import DiscoverySource
from omninode_bridge.errors import ConfigurationError
from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.settings import Settings

__all__ = ["bridges_from_settings", "consul_source"]


def bridges_from_settings(
    settings: Settings,
    repository: ToolRegistrationRepository,
    *,
    metrics: BridgeMetrics | None = None,
    mode: RemovalMode = RemovalMode.DELETE,
) -> list[DiscoveryBridge]:
    """One bridge per configured source: etcd (TOOLREG_ETCD_ENDPOINTS), Consul
    (TOOLREG_CONSUL_ADDRESS), both or none.

    Raises ConfigurationError (naming the variable) for malformed endpoints or
    prefix. Run each with ``asyncio.create_task(bridge.run())`` and cancel the
    task to stop it.
    """
    sources: list[DiscoverySource] = []
    if settings.etcd_endpoints:
        sources.append(EtcdSource(parse_endpoints(settings.etcd_endpoints), settings.etcd_prefix))
    if settings.consul_address:
        sources.append(consul_source(settings))
    return [
        DiscoveryBridge(
            source,
            repository,
            mode=mode,
            ttl_seconds=settings.ttl_seconds,
            max_json_bytes=settings.max_json_bytes,
            metrics=metrics,
            claim_hold_seconds=settings.claim_hold_seconds,
        )
        for source in sources
    ]


def consul_source(
    settings: Settings,
    address: str | None = None,
    services: list[str] | None = None,
    token: str | None = None,
) -> ConsulSource:
    """The Consul source of the settings (TOOLREG_CONSUL_*), arguments winning.

    Raises ConfigurationError naming the variable when no address is given or
    it is malformed.
    """
    raw = address or settings.consul_address
    if not raw:
        raise ConfigurationError("no Consul address: pass --address or set TOOLREG_CONSUL_ADDRESS")
    variable = "--address" if address else "TOOLREG_CONSUL_ADDRESS"
    listed = services or [
        s.strip() for s in (settings.consul_services or "").split(",") if s.strip()
    ]
    secret = token or (
        settings.consul_token.get_secret_value() if settings.consul_token is not None else None
    )
    return ConsulSource(
        parse_address(raw, variable), listed, secret, critical_grace=settings.ttl_seconds
    )
