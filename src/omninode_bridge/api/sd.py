"""``GET /v1/sd/prometheus``: Prometheus HTTP service discovery (``http_sd_configs``).

One target group per tool that declares a metrics endpoint (``endpoints.metrics``):
the target is its ``host:port``; ``__scheme__``, ``__metrics_path__`` and one
``__param_<name>`` per query parameter come from the URL, so Prometheus scrapes
exactly that endpoint with no relabelling (a repeated parameter keeps its first
value, as Prometheus sends one value per ``__param_`` label; a parameter whose name
is not a valid label name is left out). Userinfo (``user:password@``) is never put
in a label: it is dropped, so configure credentials in the scrape job. A URL with
port 0 names no scrapeable port: such a tool is not a target. Labels:
``__meta_toolreg_tool_id``, ``__meta_toolreg_node_type``, ``__meta_toolreg_health``
(healthy, stale or critical, as the change feed last said), one
``__meta_toolreg_operation_<op>="true"`` per operation, and every top-level
string metadata value as ``__meta_toolreg_metadata_<key>``. Operation names and
metadata keys are reduced to ``[a-zA-Z0-9_]``; a name that is already valid keeps
its label, and names that change when reduced and then collide (``a-b``, ``a.b``)
with each other or with a valid one get no label, so a label never stands for
whichever key happened to win. Filters: ``node_type``, ``operation``, ``healthy=true``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

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


def _named(prefix: str, items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``prefix`` + each name reduced to ``[a-zA-Z0-9_]``, to its value. A name already
    valid keeps its label; a reduced name that another name also maps to gets none, so
    the answer does not depend on which of them came first."""
    exact: dict[str, str] = {}
    reduced: dict[str, list[str]] = {}
    for name, value in items:
        label = _LABEL.sub("_", name)
        if label == name:
            exact[label] = value
        else:
            reduced.setdefault(label, []).append(value)
    for label, values in reduced.items():
        if label not in exact and len(values) == 1:
            exact[label] = values[0]
    return {f"{prefix}{label}": value for label, value in exact.items()}


def target_group(
    tool: LiveTool, registration: ModelToolRegistration | None = None
) -> dict[str, Any] | None:
    """The target group of one tool, or ``None`` when it declares no scrapeable metrics endpoint.

    ``registration``: the tool's, when the caller has decoded it already."""
    if registration is None:
        registration = tool.registration
    endpoint = registration.endpoints.get(METRICS_ENDPOINT)
    if endpoint is None:
        return None
    url = urlsplit(endpoint)  # validated at registration: the port parses
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, 80)
    if port == 0:
        return None
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
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        label = f"__param_{name}"  # Prometheus adds ?name=value to the scrape
        if name and not _LABEL.search(name) and label not in labels:
            labels[label] = value
    operations = registration.capabilities.get("operations")
    if isinstance(operations, list):
        ops = dict.fromkeys(op for op in operations if isinstance(op, str))  # once each
        labels.update(_named("__meta_toolreg_operation_", ((op, "true") for op in ops)))
    metadata = registration.metadata.items()
    strings = [(key, value) for key, value in metadata if isinstance(value, str)]
    labels.update(_named("__meta_toolreg_metadata_", strings))
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
