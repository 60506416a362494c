"""What the MCP tools and resources hand out about registrations.

- :func:`tool_document`: the full registration with its ``health`` now and its
  ``uri`` (``get_tool``, ``resources/read``): the document of
  ``GET /v1/tools/{tool_id}`` (heartbeat freshness on the database clock, the
  active checks' verdict and since when);
- :func:`compact_document`: ``tool_id``, ``node_type``, ``operations``,
  ``health`` and ``endpoints``, what ``search_tools`` lists;
- :func:`reported`: registry errors as MCP resource errors (the tools answer
  structured errors instead: :mod:`omninode_bridge.api.mcp.outcomes`).

In a compact document ``health`` is the change feed's word (the live view):
``critical`` (failing active checks), ``stale`` (heartbeat past the TTL at the
last sweep) or ``healthy``. A tool the view has not caught up with yet
(registered a moment ago) is judged by its heartbeat against
``TOOLREG_TTL_SECONDS``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import MCPServerError
from pydantic import ValidationError

from omninode_bridge.api.mcp.notifier import tool_uri
from omninode_bridge.api.problems import public_problem
from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.status import ModelToolRegistrationWithHealth
from omninode_bridge.services.live_view import LiveView

__all__ = ["compact_document", "health_of", "operations_of", "reported", "tool_document"]

logger = logging.getLogger(__name__)


def health_of(registration: ModelToolRegistration, view: LiveView, ttl_seconds: float) -> str:
    """``healthy``, ``stale`` or ``critical`` (see the module docstring)."""
    live = view.get(registration.tool_id)
    if live is not None:
        return live.health
    return "healthy" if registration.is_healthy(ttl_seconds) else "stale"


def operations_of(registration: ModelToolRegistration) -> list[str]:
    """The operations a registration lists in ``capabilities.operations`` (text ones only)."""
    declared = registration.capabilities.get("operations")
    if not isinstance(declared, list):
        return []
    return [op for op in declared if isinstance(op, str)]


def tool_document(found: ModelToolRegistrationWithHealth) -> dict[str, Any]:
    """A registration with its health, as JSON, and its resource ``uri``."""
    document = found.model_dump(mode="json")
    document["uri"] = tool_uri(found.tool_id)
    return document


def compact_document(
    registration: ModelToolRegistration, view: LiveView, ttl_seconds: float
) -> dict[str, Any]:
    """What a model needs to pick a tool: id, node type, operations, health, endpoints."""
    return {
        "tool_id": registration.tool_id,
        "node_type": registration.node_type.value,
        "operations": operations_of(registration),
        "health": health_of(registration, view, ttl_seconds),
        "endpoints": dict(registration.endpoints),
    }


@contextmanager
def reported(error: type[MCPServerError]) -> Iterator[None]:
    """Turn what the block raises into ``error`` with the message the HTTP API would give.

    Registry errors keep their public wording (a 503 names no database); invalid
    arguments name their fields; anything else is logged and reported as a failure
    of the registry, leaking nothing.
    """
    try:
        yield
    except MCPServerError:
        raise
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise error(f"Validation failed: {fields}") from None
    except OmniNodeBridgeError as exc:
        problem = public_problem(exc)
        if problem is None:
            logger.error("MCP request failed: %s", exc, exc_info=exc)
            raise error("Internal error: the registry failed; see its log") from None
        status, title, detail = problem
        if status == 503:
            logger.warning("MCP request: %s", exc)
        raise error(f"{title}: {detail}") from None
    except Exception as exc:
        logger.error("MCP request crashed", exc_info=exc)
        raise error("Internal error: the registry failed; see its log") from None
