"""One app's MCP face: the MCP server at ``/mcp`` and the ``/v0.1`` registry API.

Built by the app factory, a new one per app (the SDK's session manager runs
once per instance); ``running()`` is entered in the app's lifespan.

The transport is streamable HTTP, stateless, answering in JSON (the 2025-11-25
handshake and the 2026-07-28 per-request wire both work; change notifications
ride ``subscriptions/listen`` streams, which need 2026-07-28). Any replica can
answer any request. DNS-rebinding protection checks ``Host`` and ``Origin``
(421 and 403): see ``TOOLREG_MCP_ALLOWED_HOSTS`` / ``TOOLREG_MCP_ALLOWED_ORIGINS``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from omninode_bridge import __version__
from omninode_bridge.api.mcp.endpoint import McpEndpoint
from omninode_bridge.api.mcp.notifier import ChangeNotifier
from omninode_bridge.api.mcp.registry_api import registry_router
from omninode_bridge.api.mcp.resources import RegistryMcpServer, ToolResources
from omninode_bridge.api.mcp.servers import Catalog
from omninode_bridge.api.mcp.tools import RegistryTools
from omninode_bridge.api.state import AppState
from omninode_bridge.settings import Settings

__all__ = ["McpFace", "transport_security"]

PATH = "/mcp"
INSTRUCTIONS = (
    "A registry of tools (services) that register their node type, capabilities, "
    "endpoints and metadata and keep themselves alive with heartbeats. To get something "
    "done: find a tool offering the operation with search_tools (or read one with get_tool "
    "or the toolreg://tools/<tool_id> resources), ask discover which tool would take it now "
    "and why others would not, then call_tool with the operation and a JSON payload: the "
    "registry picks a healthy tool, fails over, and returns the tool's JSON answer or a "
    "structured error with a hint (call_tool needs a write or admin token)."
)
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The Host and Origin values ``/mcp`` accepts (see the settings' comments)."""
    if settings.mcp_allowed_hosts is not None and settings.mcp_allowed_hosts.strip() == "*":
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if settings.mcp_allowed_hosts is not None:
        hosts = _listed(settings.mcp_allowed_hosts)
    else:
        names = list(_LOOPBACK)
        bound = settings.host
        try:
            address = ipaddress.ip_address(bound)
        except ValueError:
            names.append(bound)  # a host name
        else:
            if not address.is_unspecified:
                names.append(f"[{bound}]" if address.version == 6 else bound)
        hosts = [h for name in dict.fromkeys(names) for h in (name, f"{name}:*")]
    if settings.mcp_allowed_origins is not None:
        origins = _listed(settings.mcp_allowed_origins)
    else:
        origins = [f"{scheme}://{name}:*" for scheme in ("http", "https") for name in _LOOPBACK]
        origins += [f"{scheme}://{name}" for scheme in ("http", "https") for name in _LOOPBACK]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


class McpFace:
    """The MCP server, its ``/mcp`` route, the ``/v0.1`` router and the change notifier."""

    def __init__(self, settings: Settings, state_of: Callable[[], AppState]) -> None:
        bus = InMemorySubscriptionBus()
        self.notifier = ChangeNotifier(bus)
        resources = ToolResources(state_of)
        self.server = RegistryMcpServer(
            resources,
            name="toolreg",
            title="omninode tool registry",
            version=__version__,
            instructions=INSTRUCTIONS,
            subscriptions=bus,
            log_level="WARNING",
        )
        RegistryTools(state_of).install(self.server)
        resources.install(self.server)
        self.server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=transport_security(settings),
            max_request_body_size=settings.max_body_bytes,
        )
        endpoint = McpEndpoint(
            self.server.session_manager.handle_request,
            self.notifier,
            state_of,
            settings.mcp_listens_per_client,
        )
        self.route = Route(PATH, endpoint=endpoint)
        endpoint.route = self.route
        self.registry_router: APIRouter = registry_router(Catalog(settings.mcp_namespace))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the SDK's session manager (once) and stop the notifier at the end."""
        async with self.server.session_manager.run():
            try:
                yield
            finally:
                await self.notifier.aclose()
