"""The MCP resources: every registered tool is ``toolreg://tools/<tool_id>`` (JSON).

``resources/list`` pages through them by tool_id (``PAGE_SIZE`` a page, with
``nextCursor``), from the live view, so listing costs no query;
``resources/read`` of a tool's URI gives its registration and health now (one
statement: the same document as the ``get_tool`` tool and
``GET /v1/tools/{tool_id}``); the template ``toolreg://tools/{tool_id}`` reads
any tool by id. Changes are announced by
:mod:`omninode_bridge.api.mcp.notifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
)

from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.mcp.cursors import decode_cursor, encode_cursor
from omninode_bridge.api.mcp.documents import reported, tool_document
from omninode_bridge.api.mcp.notifier import TOOL_URI_PREFIX, tool_uri
from omninode_bridge.api.state import AppState

__all__ = ["PAGE_SIZE", "RegistryMcpServer", "ToolResources"]

PAGE_SIZE = 500
JSON = "application/json"


def _tool_id_after(cursor: str) -> str:
    tool_id = decode_cursor(cursor)
    if tool_id is None:
        raise MCPError(INVALID_PARAMS, "the cursor is not one this server gave out")
    return tool_id


class ToolResources:
    """Lists and reads the tool resources of one app; ``state_of`` gives its state."""

    def __init__(self, state_of: Callable[[], AppState]) -> None:
        self.state_of = state_of

    def install(self, server: MCPServer[Any]) -> None:
        # A tool id is a name, not a path: "a:b" is not a Windows drive, so the SDK's
        # path checks do not apply (the id is only ever looked up in the view).
        server.resource(
            TOOL_URI_PREFIX + "{tool_id}",
            name="tool",
            title="A registered tool",
            description="A registration with its health, by tool_id.",
            mime_type=JSON,
            security=ResourceSecurity(exempt_params={"tool_id"}),
        )(self.read)

    async def read(self, tool_id: str) -> str:
        """The JSON document of ``tool_id``."""
        with reported(ResourceError):
            state = self.state_of()
            found = await state.repository.get_registration_with_health(
                tool_id, state.settings.ttl_seconds
            )
            if found is None:
                raise ResourceNotFoundError(f"tool_id {tool_id!r} is not registered")
            return orjson.dumps(tool_document(found)).decode()

    async def page(self, cursor: str | None) -> ListResourcesResult:
        """One page of tool resources, by tool_id."""
        after = _tool_id_after(cursor) if cursor else None
        try:
            with reported(ResourceError):
                view = await live_view(self.state_of())
        except ResourceError as exc:
            raise MCPError(INTERNAL_ERROR, str(exc)) from None
        chunk = view.ids_after(after, PAGE_SIZE + 1)  # one more: is there a next page?
        more = len(chunk) > PAGE_SIZE
        tools = [t for t in map(view.get, chunk[:PAGE_SIZE]) if t is not None]
        resources = [
            Resource(
                uri=tool_uri(tool.tool_id),
                name=tool.tool_id,
                description=f"{tool.digest.node_type.value} tool, {tool.health}",
                mime_type=JSON,
            )
            for tool in tools
        ]
        return ListResourcesResult(
            resources=resources, next_cursor=encode_cursor(chunk[PAGE_SIZE - 1]) if more else None
        )


class RegistryMcpServer(MCPServer[Any]):
    """An MCPServer whose resource list is the registry's tools, paged.

    ``MCPServer.list_resources`` takes no cursor, so the list handler is replaced
    (the SDK registers this method as the ``resources/list`` handler).
    """

    def __init__(self, resources: ToolResources, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tool_resources = resources

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        return await self.tool_resources.page(params.cursor if params is not None else None)
