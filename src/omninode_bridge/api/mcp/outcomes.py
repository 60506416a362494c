"""What an MCP tool answers: a JSON result, or a structured error a model can act on.

Success is a ``CallToolResult`` whose ``structuredContent`` is the JSON object
and whose text is the same JSON. A failure is a tool error (``isError``) whose
``structuredContent`` and text are both ``{"error": {...}}`` with:

- ``kind``: what went wrong, one of :data:`KINDS`;
- ``message``: the registry's wording (as the HTTP API words it; a 503 names
  no database);
- ``retryable``: whether the same call may succeed later unchanged;
- ``hint``: what to do about it, for a model;
- details by kind: ``fields`` (invalid_arguments), ``tool_id`` (not_found),
  ``operation`` and ``explanation`` (no_routable_tool: the discovery
  service's account, the same as the HTTP API's 404 and the console's),
  ``tool_id``, ``endpoint``, ``status`` and ``body_start`` (tool_error,
  tool_unreachable, timeout, response_too_large), ``retry_after_seconds``
  (registry_unavailable).

Text and structure carry the same JSON because many MCP clients show a model
only the text of a result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from omninode_bridge.api.problems import RETRY_AFTER_SECONDS, public_problem
from omninode_bridge.errors import (
    AuthenticationError,
    NoRoutableToolError,
    OmniNodeBridgeError,
    PermissionDeniedError,
    QueryTimeoutError,
    ToolCallError,
    ToolNotFoundError,
    ToolResponseTooLargeError,
    ValidationFailedError,
)

__all__ = ["KINDS", "error_of", "failure", "success"]

logger = logging.getLogger(__name__)

KINDS = (
    "invalid_arguments",
    "not_found",
    "no_routable_tool",
    "tool_error",
    "tool_unreachable",
    "timeout",
    "response_too_large",
    "unauthorized",
    "forbidden",
    "query_too_expensive",
    "registry_unavailable",
    "internal",
)

_HINTS = {
    "invalid_arguments": "Fix the arguments named in fields and call again.",
    "not_found": "No tool is registered under this tool_id; find one with search_tools.",
    "no_routable_tool": (
        "No tool can take this operation now; explanation.tools[].reason says why for each "
        "tool that declares it (stale: its heartbeat lapsed; critical: its health checks "
        "fail; ejected: it was unreachable, back at 'until'; no_endpoint; excluded). "
        "Try again later, or look for another tool with search_tools."
    ),
    "tool_4xx": "The tool rejected the payload: correct it (body_start shows the tool's answer).",
    "tool_5xx": (
        "The tool failed while handling the request and may have acted on it, so it was not "
        "retried on another tool. Call again with idempotent=true only if repeating the "
        "operation is safe."
    ),
    "tool_5xx_idempotent": "Every tool tried failed; try again later.",
    "tool_other": "The tool answered something that is not a JSON object; it cannot be used.",
    "tool_redirect": (
        "The tool answered with a redirect, which the registry does not follow: the tool "
        "cannot be used until it is registered with the URL that answers."
    ),
    "tool_unreachable": (
        "The tool could not be reached or its connection broke; tools that could not be "
        "reached are skipped for a while. Try again later; if the request may have been "
        "sent, repeat it only when that is safe (idempotent=true)."
    ),
    "timeout": (
        "The tool did not answer in time and may still act on the request. Call again with "
        "a larger timeout_seconds, or with idempotent=true if repeating the operation is safe."
    ),
    "response_too_large": (
        "The tool's answer is larger than this registry passes on (TOOLREG_MAX_RESPONSE_BYTES); "
        "ask the tool for less."
    ),
    "unauthorized": (
        "Configure the MCP client to send 'Authorization: Bearer <token>' with a valid "
        "registry token; call_tool needs the write or admin scope."
    ),
    "forbidden": "This token's scope does not allow it: call_tool needs a write or admin token.",
    "query_too_expensive": "Make the search cheaper: a simpler where, more filters, a lower limit.",
    "registry_unavailable": "The registry cannot reach its database right now; retry shortly.",
    "internal": "The registry failed; its log says why.",
}


def _result(document: Mapping[str, Any], *, is_error: bool) -> CallToolResult:
    text = orjson.dumps(document).decode()
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=dict(document),
        is_error=is_error,
    )


def success(document: Mapping[str, Any]) -> CallToolResult:
    """A tool's JSON result."""
    return _result(document, is_error=False)


def failure(error: Mapping[str, Any]) -> CallToolResult:
    """A structured tool error: ``{"error": error}``."""
    return _result({"error": dict(error)}, is_error=True)


def _error(kind: str, message: str, *, retryable: bool, hint: str | None = None,
           **details: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": kind,
        "message": message,
        "retryable": retryable,
        "hint": hint if hint is not None else _HINTS[kind],
        **details,
    }


def _public(exc: OmniNodeBridgeError) -> str:
    problem = public_problem(exc)
    if problem is None:
        return "Internal error: the registry failed; see its log"
    _, title, detail = problem
    return f"{title}: {detail}"


def _timed_out(exc: ToolCallError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, httpx.TimeoutException) and not isinstance(
        cause, httpx.ConnectTimeout | httpx.PoolTimeout
    )


def _call_error(exc: ToolCallError, idempotent: bool) -> dict[str, Any]:
    where = {"tool_id": exc.tool_id, "endpoint": exc.endpoint}
    message = _public(exc)
    if isinstance(exc, ToolResponseTooLargeError):
        return _error("response_too_large", message, retryable=False, status=exc.status,
                      limit_bytes=exc.limit, **where)  # fmt: skip
    if exc.status is None:
        kind = "timeout" if _timed_out(exc) else "tool_unreachable"
        return _error(kind, message, retryable=True, status=None, body_start="", **where)
    if 400 <= exc.status < 500:
        hint, retryable = _HINTS["tool_4xx"], False
    elif exc.status >= 500:
        hint = _HINTS["tool_5xx_idempotent" if idempotent else "tool_5xx"]
        retryable = True
    elif 300 <= exc.status < 400:
        hint, retryable = _HINTS["tool_redirect"], False
    else:
        hint, retryable = _HINTS["tool_other"], False
    return _error("tool_error", message, retryable=retryable, hint=hint, status=exc.status,
                  body_start=exc.body_excerpt, **where)  # fmt: skip


def error_of(exc: BaseException, *, idempotent: bool = False) -> dict[str, Any]:
    """The structured error for ``exc`` (see the module docstring); logs what is unexpected.

    ``idempotent`` words the hint for a failed call (was it allowed to go elsewhere?).
    """
    if isinstance(exc, ValidationError):
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]) or "arguments", "message": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _error("invalid_arguments", f"Validation failed: {detail}", retryable=False,
                      fields=fields)  # fmt: skip
    if not isinstance(exc, OmniNodeBridgeError):
        logger.error("MCP tool crashed", exc_info=exc)
        return _error("internal", "Internal error: the registry failed; see its log",
                      retryable=False)  # fmt: skip
    message = _public(exc)
    if isinstance(exc, ValidationFailedError):
        fields = [{"field": f, "message": m} for f, m in exc.errors]
        return _error("invalid_arguments", message, retryable=False, fields=fields)
    if isinstance(exc, ToolNotFoundError):
        return _error("not_found", message, retryable=False, tool_id=exc.tool_id)
    if isinstance(exc, NoRoutableToolError):
        return _error("no_routable_tool", message, retryable=True, operation=exc.operation,
                      explanation=exc.explanation)  # fmt: skip
    if isinstance(exc, ToolCallError):
        return _call_error(exc, idempotent)
    if isinstance(exc, AuthenticationError):
        return _error("unauthorized", message, retryable=False)
    if isinstance(exc, PermissionDeniedError):
        return _error("forbidden", message, retryable=False)
    if isinstance(exc, QueryTimeoutError):
        return _error("query_too_expensive", message, retryable=False)
    problem = public_problem(exc)
    if problem is not None and problem[0] == 503:  # the database, the schema, the settings
        logger.warning("MCP tool: %s", exc)
        return _error("registry_unavailable", message, retryable=True,
                      retry_after_seconds=RETRY_AFTER_SECONDS)  # fmt: skip
    if problem is None:
        logger.error("MCP tool failed: %s", exc, exc_info=exc)
    return _error("internal", message, retryable=False)
