"""The Consul-compatible read API: a face of the registry for existing Consul clients."""

from __future__ import annotations

from omninode_bridge.api.consul.mapping import service_names
from omninode_bridge.api.consul.routes import router

__all__ = ["router", "service_names"]
