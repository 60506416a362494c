"""The MCP tools: search, read, discover and call the registry's tools.

- ``search_tools``: registered tools by operation, node type, capabilities
  (JSONB containment) and ``where`` (SQL/JSON path), healthy ones only unless
  told otherwise, as compact documents a page at a time;
- ``get_tool``: one full registration and its health now (as
  ``GET /v1/tools/{tool_id}`` answers it);
- ``discover``: the tool discovery would route an operation to now, and the
  discovery service's account of every tool that declares it (the same
  explanation as the HTTP API's 404 and the console);
- ``call_tool``: ``ToolDiscoveryService.route_request``: POST a JSON payload
  to a routable tool for the operation (load balancing, failover, ejection,
  the response cap) and answer the tool's JSON. It makes the registry act on
  another service for the caller, so it needs a token with the ``write`` or
  ``admin`` scope, even where reads are open.

Every tool answers a structured error on failure
(:mod:`omninode_bridge.api.mcp.outcomes`); arguments that do not fit a tool's
input schema are refused by the SDK before the tool runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from omninode_bridge.api.auth import require_writer
from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.mcp.documents import compact_document, health_of, tool_document
from omninode_bridge.api.mcp.endpoint import principal_in
from omninode_bridge.api.mcp.outcomes import error_of, failure, success
from omninode_bridge.api.schemas import SearchRequest
from omninode_bridge.api.state import AppState
from omninode_bridge.errors import (
    MissingEndpointError,
    ToolNotFoundError,
    ValidationFailedError,
)
from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.cursors import encode_page_cursor
from omninode_bridge.services.live_view import LiveView

__all__ = ["MAX_SEARCH_LIMIT", "RegistryTools"]

MAX_SEARCH_LIMIT = 100
# Pages read at most per search_tools call when healthy_only leaves tools out.
SEARCH_ROUNDS = 5

Operation = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
        description="An operation, as tools list it in capabilities.operations (e.g. 'hash').",
    ),
]
_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
_CALL = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)


class CompactTool(BaseModel):
    """One registration, in short."""

    tool_id: str
    node_type: str = Field(description="effect, compute, reducer or orchestrator.")
    operations: list[str] = Field(description="The operations it offers (call_tool takes these).")
    health: str = Field(
        description="healthy; stale (its heartbeat lapsed); critical (its health checks fail)."
    )
    endpoints: dict[str, str] = Field(description="Operation -> the URL the registry calls.")


class SearchResult(BaseModel):
    tools: list[CompactTool]
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null when there is no more."
    )


class DiscoverResult(BaseModel):
    operation: str
    routable: bool = Field(description="Whether at least one tool can take the operation now.")
    tool: dict[str, Any] | None = Field(
        description="The registration discovery picks now (as GET /v1/discover answers), or null."
    )
    explanation: dict[str, Any] = Field(
        description="declared and routable counts, a summary, and tools[] with a reason each "
        "(routable, no_endpoint, stale, critical, excluded, ejected) and since/until times."
    )


def _with_operation(capabilities: dict[str, Any] | None, operation: str | None) -> Any:
    """``capabilities`` that also require ``operation`` in ``operations``."""
    if operation is None:
        return capabilities
    if capabilities is not None and not isinstance(capabilities, dict):
        return capabilities  # the search's own validation names it
    merged = dict(capabilities or {})
    declared = merged.get("operations")
    if declared is None:
        merged["operations"] = [operation]
    elif isinstance(declared, list):
        merged["operations"] = declared if operation in declared else [*declared, operation]
    else:
        raise ValidationFailedError(
            [("capabilities.operations", "must be a list when operation is given too")]
        )
    return merged


async def _search(
    state: AppState, query: SearchRequest, view: LiveView, healthy_only: bool
) -> tuple[list[ModelToolRegistration], str | None]:
    """One page of matches; with ``healthy_only``, tools that are not healthy are skipped
    and further pages read (up to SEARCH_ROUNDS) to fill it."""
    ttl = state.settings.ttl_seconds

    def wanted(registration: ModelToolRegistration) -> bool:
        return not healthy_only or health_of(registration, view, ttl) == "healthy"

    found: list[ModelToolRegistration] = []
    after = query.cursor
    for _ in range(SEARCH_ROUNDS):
        page = await state.repository.find_tools(
            capabilities=query.capabilities,
            node_type=query.node_type,
            max_age_seconds=ttl if healthy_only else None,  # the heartbeat, at read time
            where=query.where,
            limit=query.limit,
            cursor=after,
        )
        for n, registration in enumerate(page.items):
            if not wanted(registration):
                continue
            found.append(registration)
            if len(found) == query.limit:
                more = page.next_cursor is not None or any(map(wanted, page.items[n + 1 :]))
                return found, encode_page_cursor(registration.tool_id) if more else None
        if page.next_cursor is None:
            return found, None
        after = page.next_cursor
    return found, after


class RegistryTools:
    """The tools of one app's MCP server; ``state_of`` gives the running app's state."""

    def __init__(self, state_of: Callable[[], AppState]) -> None:
        self.state_of = state_of

    def install(self, server: MCPServer[Any]) -> None:
        for tool, title, hints in (
            (self.search_tools, "Find tools by capability", _READ),
            (self.get_tool, "Read one registration", _READ),
            (self.discover, "Which tool would take an operation?", _READ),
            (self.call_tool, "Call a tool by operation", _CALL),
        ):
            # The docstring is what a model reads: without the indentation and rST quoting.
            description = inspect.cleandoc(tool.__doc__ or "").replace("``", "`")
            server.add_tool(tool, title=title, description=description, annotations=hints)

    async def search_tools(
        self,
        operation: Annotated[
            str | None,
            Field(
                max_length=128,
                description="Only tools offering this operation (in capabilities.operations).",
            ),
        ] = None,
        node_type: Annotated[
            str | None, Field(description="effect, compute, reducer or orchestrator.")
        ] = None,
        capabilities: Annotated[
            dict[str, Any] | None,
            Field(
                description="JSON containment on the tool's capabilities: a list means "
                "'contains all of these', a scalar means 'equals'; e.g. {\"formats\": [\"yaml\"]}."
            ),
        ] = None,
        where: Annotated[
            str | None,
            Field(
                max_length=4096,
                description="A SQL/JSON path predicate on capabilities, e.g. "
                "'$.max_file_size >= 5000000'.",
            ),
        ] = None,
        healthy_only: Annotated[
            bool,
            Field(description="Leave out tools whose heartbeat lapsed or whose checks fail."),
        ] = True,
        limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_LIMIT)] = 20,
        cursor: Annotated[
            str | None, Field(max_length=1024, description="next_cursor of the previous page.")
        ] = None,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Find registered tools by what they offer. Filters combine with AND.

        Returns compact registrations (tool_id, node_type, operations, health, endpoints) in
        tool_id order, and next_cursor for the next page. Call a tool's operation with
        call_tool; read everything about one with get_tool.
        """
        try:
            query = SearchRequest.model_validate(
                {
                    "capabilities": _with_operation(capabilities, operation),
                    "node_type": node_type,
                    "where": where,
                    "limit": limit,
                    "cursor": cursor,
                }
            )
            state = self.state_of()
            view = await live_view(state)
            found, next_cursor = await _search(state, query, view, healthy_only)
            ttl = state.settings.ttl_seconds
            return success(
                {
                    "tools": [compact_document(r, view, ttl) for r in found],
                    "next_cursor": next_cursor,
                }
            )
        except Exception as exc:
            return failure(error_of(exc))

    async def get_tool(
        self, tool_id: Annotated[str, Field(min_length=1, max_length=255)]
    ) -> Annotated[CallToolResult, dict[str, Any]]:
        """One registration by tool_id: node_type, capabilities, endpoints, metadata,
        health_endpoint, last_heartbeat, registered_at, updated_at, and its health now
        (health.status healthy, stale or critical; whether the heartbeat is within the TTL;
        the health checks' verdict and since when)."""
        try:
            state = self.state_of()
            found = await state.repository.get_registration_with_health(
                tool_id, state.settings.ttl_seconds
            )
            if found is None:
                raise ToolNotFoundError(tool_id)
            return success(tool_document(found))
        except Exception as exc:
            return failure(error_of(exc))

    async def discover(self, operation: Operation) -> Annotated[CallToolResult, DiscoverResult]:
        """The tool discovery would route ``operation`` to now (``tool``, or null), and why
        each tool that declares it can or cannot take it (``explanation``). When ``routable``
        is false, the explanation says why none can (e.g. all stale, critical or ejected)."""
        try:
            discovery = self.state_of().discovery
            tool = await discovery.discover_tool(operation)
            explanation = await discovery.explain(operation)
            return success(
                {
                    "operation": operation,
                    "routable": explanation.routable > 0,
                    "tool": tool.model_dump(mode="json") if tool is not None else None,
                    "explanation": explanation.as_dict(),
                }
            )
        except Exception as exc:
            return failure(error_of(exc))

    async def call_tool(
        self,
        operation: Operation,
        payload: Annotated[
            dict[str, Any], Field(description="The JSON object to POST to the tool.")
        ],
        ctx: Context,
        idempotent: Annotated[
            bool,
            Field(
                description="Safe to repeat: after a timeout, a lost answer or a 5xx the "
                "registry may retry on another tool."
            ),
        ] = False,
        timeout_seconds: Annotated[
            float | None,
            Field(gt=0, le=3600, description="Overrides the registry's HTTP timeouts."),
        ] = None,
    ) -> CallToolResult:  # any JSON object: no output schema to check it against
        """Call ``operation`` on a routable tool: the registry POSTs ``payload`` to the
        tool's endpoint for it and returns the tool's JSON answer.

        A tool that cannot be reached is skipped for the next one; once a tool got the
        request it is not retried elsewhere unless ``idempotent``. On failure the result is
        an error with a kind (no_routable_tool, tool_error with status and body_start,
        timeout, tool_unreachable, response_too_large, unauthorized, ...) and a hint.
        Needs a token with the write or admin scope.
        """
        try:
            await require_writer(principal_in(ctx.request_context.request))
            discovery = self.state_of().discovery
            try:
                answer = await discovery.route_request(
                    operation, payload, idempotent=idempotent, timeout=timeout_seconds
                )
            except MissingEndpointError:
                raise await discovery.no_routable_tool(operation) from None
            return success(answer)
        except Exception as exc:
            return failure(error_of(exc, idempotent=idempotent))
