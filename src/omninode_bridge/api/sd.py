"""``GET /v1/sd/prometheus``: Prometheus HTTP service discovery (``http_sd_configs``).

One target group per tool that declares a metrics endpoint (``endpoints.metrics``):
the target is its ``host:port``; ``__scheme__`` and ``__metrics_path__`` come from
the URL, so Prometheus scrapes exactly that endpoint with no relabelling. Labels:
``__meta_toolreg_tool_id``, ``__meta_toolreg_node_type``, ``__meta_toolreg_health``
(healthy, stale or critical, as the change feed last said), one
``__meta_toolreg_operation_<op>="true"`` per operation, and every top-level
string metadata value as ``__meta_toolreg_metadata_<key>`` (names reduced to
``[a-zA-Z0-9_]``). Filters: ``node_type``, ``operation``, ``healthy=true``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader
from omninode_bridge.api.consul.routes import live_view
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.services.live_view import LiveTool

__all__ = ["router", "target_group"]

router = APIRouter(prefix="/v1/sd", tags=["service discovery"])

METRICS_ENDPOINT = "metrics"
_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _name(text: str) -> str:
    return _LABEL.sub("_", text)


def target_group(
    tool: LiveTool, registration: ModelToolRegistration | None = None
) -> dict[str, Any] | None:
    """The target group of one tool, or ``None`` when it declares no metrics endpoint.

    ``registration``: the tool's, when the caller has decoded it already."""
    if registration is None:
        registration = tool.registration
    endpoint = registration.endpoints.get(METRICS_ENDPOINT)
    if endpoint is None:
        return None
    url = urlsplit(endpoint)
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    labels = {
        "__scheme__": url.scheme,
        "__metrics_path__": url.path or "/metrics",
        "__meta_toolreg_tool_id": registration.tool_id,
        "__meta_toolreg_node_type": registration.node_type.value,
        "__meta_toolreg_health": tool.health,
    }
    operations = registration.capabilities.get("operations")
    if isinstance(operations, list):
        for operation in operations:
            if isinstance(operation, str):
                labels[f"__meta_toolreg_operation_{_name(operation)}"] = "true"
    for key, value in registration.metadata.items():
        if isinstance(value, str):
            labels[f"__meta_toolreg_metadata_{_name(key)}"] = value
    return {"targets": [f"{host}:{port}"], "labels": labels}


@router.get(
    "/prometheus",
    responses={
        200: {
            "description": "Target groups in http_sd_configs format",
            **examples.content(examples.PROMETHEUS_TARGETS),
        },
        **problems(401, 422),
    },
)
async def prometheus_targets(
    state: State,
    _: Reader,
    node_type: NodeType | None = None,
    operation: Annotated[str | None, Query(max_length=128)] = None,
    healthy: bool = False,
) -> Response:
    """Every tool with a metrics endpoint, as Prometheus ``http_sd_configs`` target groups."""
    view = await live_view(state)

    def render() -> bytes:
        groups = []
        # The digest says which tools declare a metrics endpoint: only those are decoded.
        candidates = [
            t
            for t in view.tools(
                lambda d: (
                    METRICS_ENDPOINT in d.endpoints
                    and (node_type is None or d.node_type is node_type)
                )
            )
            if not healthy or t.health == "healthy"
        ]
        for tool in sorted(candidates, key=lambda t: t.tool_id):
            registration = tool.registration
            operations = registration.capabilities.get("operations")
            if operation is not None and not (
                isinstance(operations, list) and operation in operations
            ):
                continue
            group = target_group(tool, registration)
            if group is not None:
                groups.append(group)
        return orjson.dumps(groups)

    # Computed once per change of the view, however many Prometheus servers ask.
    body = view.memo(("sd-prometheus", node_type, operation, healthy), render)
    return Response(body, media_type="application/json")
