"""Auto-discovery: sources that feed the registry with no code in the tools (etcd, Consul).

A :class:`~omninode_bridge.autodiscovery.source.DiscoverySource` reports
announcements (a snapshot, then changes by revision); a
:class:`~omninode_bridge.autodiscovery.bridge.DiscoveryBridge` applies them to
the registry as registrations owned by the source. ``toolreg autodiscover
etcd`` (or ``consul``) runs one bridge on its own; ``toolreg serve`` runs those configured in
the settings (:func:`bridges_from_settings`).
"""

from __future__ import annotations

from omninode_bridge.autodiscovery.bridge import DiscoveryBridge, RemovalMode, parse_registration
from omninode_bridge.autodiscovery.configure import bridges_from_settings
from omninode_bridge.autodiscovery.consul import ConsulSource
from omninode_bridge.autodiscovery.etcd import EtcdEndpoint, EtcdSource, parse_endpoints
from omninode_bridge.autodiscovery.metrics import BridgeMetrics
from omninode_bridge.autodiscovery.source import (
    DiscoverySource,
    SourceEntry,
    SourceError,
    SourceEvent,
    SourceEventKind,
    SourceHistoryLostError,
    SourceSnapshot,
    SourceUnavailableError,
)

__all__ = [
    "BridgeMetrics",
    "ConsulSource",
    "DiscoveryBridge",
    "DiscoverySource",
    "EtcdEndpoint",
    "EtcdSource",
    "RemovalMode",
    "SourceEntry",
    "SourceError",
    "SourceEvent",
    "SourceEventKind",
    "SourceHistoryLostError",
    "SourceSnapshot",
    "SourceUnavailableError",
    "bridges_from_settings",
    "parse_endpoints",
    "parse_registration",
]
