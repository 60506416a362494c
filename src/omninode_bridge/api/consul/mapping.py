"""How registrations look through Consul's eyes.

A Consul *service* is an operation: every operation in
``capabilities.operations`` with an endpoint, plus ``node-type:<type>`` for
each tool's first endpoint. An *instance* is a tool. ``Service.Meta`` holds
strings only (Go clients reject a whole answer over one non-string value):
``tool_id``, ``node_type``, the endpoint's path and scheme, and every
top-level metadata value that is a string, number or boolean, as a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.live_view import Digest, LiveTool

__all__ = [
    "NODE_TYPE_PREFIX",
    "Instance",
    "Node",
    "catalog_entry",
    "health_entry",
    "instances_of",
    "service_names",
    "tags",
    "tags_of",
]

NODE_TYPE_PREFIX = "node-type:"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Node:
    """The registry as the one Consul node every instance lives on."""

    name: str
    datacenter: str


@dataclass(frozen=True, slots=True)
class Instance:
    """A tool as an instance of one service, with its registration decoded once."""

    service: str
    tool: LiveTool
    registration: ModelToolRegistration
    endpoint: str

    @property
    def tool_id(self) -> str:
        return self.tool.tool_id


def _operations(registration: ModelToolRegistration) -> list[str]:
    operations = registration.capabilities.get("operations")
    if not isinstance(operations, list):
        return []
    return [op for op in operations if isinstance(op, str) and op in registration.endpoints]


def _services(registration: ModelToolRegistration) -> Iterator[tuple[str, str]]:
    """(service name, endpoint URL) of every service the tool is an instance of."""
    for operation in dict.fromkeys(_operations(registration)):
        yield operation, registration.endpoints[operation]
    first = next(iter(registration.endpoints.values()), None)
    if first is not None:
        yield NODE_TYPE_PREFIX + registration.node_type.value, first


def service_names(registration: ModelToolRegistration) -> list[str]:
    """The services ``registration`` is an instance of (the live view's keys)."""
    return [name for name, _ in _services(registration)]


def instances_of(tools: list[LiveTool], service: str | None = None) -> list[Instance]:
    """Every instance of ``service`` (``None``: of every service), by tool_id.

    Decodes each tool's registration once (the view keeps them compact)."""
    found = [
        Instance(name, tool, registration, endpoint)
        for tool, registration in ((t, t.registration) for t in tools)
        for name, endpoint in _services(registration)
        if service is None or name == service
    ]
    found.sort(key=lambda i: (i.service, i.tool_id))
    return found


def tags_of(digest: Digest) -> list[str]:
    """``[node_type]`` plus ``metadata.tags`` when that is a list of strings."""
    return list(dict.fromkeys([digest.node_type.value, *digest.tags]))


def tags(registration: ModelToolRegistration) -> list[str]:
    """:func:`tags_of` a registration."""
    return tags_of(Digest.of(registration))


def _meta(instance: Instance) -> dict[str, str]:
    registration = instance.registration
    url = urlsplit(instance.endpoint)
    meta: dict[str, str] = {}
    for key, value in registration.metadata.items():
        if isinstance(value, bool):
            meta[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            meta[key] = str(value)
    meta.update(
        tool_id=registration.tool_id,
        node_type=registration.node_type.value,
        endpoint_path=url.path or "/",
        endpoint_scheme=url.scheme,
    )
    return meta


def _address(endpoint: str) -> tuple[str, int]:
    url = urlsplit(endpoint)
    return url.hostname or "", url.port or _DEFAULT_PORTS.get(url.scheme, 80)


def checks(instance: Instance, node: Node) -> list[dict[str, Any]]:
    """The TTL check of the heartbeat and, once active checks decided, the HTTP check."""
    tool = instance.tool
    registration = instance.registration
    common = {
        "Node": node.name,
        "ServiceID": registration.tool_id,
        "ServiceName": instance.service,
        "ServiceTags": tags_of(instance.tool.digest),
        "Notes": "",
    }
    found = [
        {
            **common,
            "CheckID": f"service:{registration.tool_id}:heartbeat",
            "Name": "heartbeat within the TTL",
            "Status": "passing" if tool.heartbeat_ok else "critical",
            "Output": "heartbeat within the TTL"
            if tool.heartbeat_ok
            else "no heartbeat within the TTL",
            "Type": "ttl",
        }
    ]
    if tool.check_status is not None:
        found.append(
            {
                **common,
                "CheckID": f"service:{registration.tool_id}:http",
                "Name": f"HTTP GET {registration.health_endpoint or ''}".strip(),
                "Status": tool.check_status,
                "Output": tool.check_output,
                "Type": "http",
            }
        )
    return found


def _node(host: str, node: Node, meta_key: str) -> dict[str, Any]:
    """The node's fields: Consul's Node (``meta_key`` ``Meta``), or the first fields of a
    flat catalog entry (``NodeMeta``)."""
    return {
        "ID": "",
        "Node": node.name,
        "Address": host,
        "Datacenter": node.datacenter,
        "TaggedAddresses": {},
        meta_key: {"toolreg": "true"},
    }


def health_entry(instance: Instance, node: Node) -> dict[str, Any]:
    """One element of ``/v1/health/service/{name}``."""
    host, port = _address(instance.endpoint)
    registration = instance.registration
    return {
        "Node": _node(host, node, "Meta"),
        "Service": {
            "ID": registration.tool_id,
            "Service": instance.service,
            "Tags": tags_of(instance.tool.digest),
            "Address": host,
            "TaggedAddresses": {},
            "Meta": _meta(instance),
            "Port": port,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
        },
        "Checks": checks(instance, node),
    }


def catalog_entry(instance: Instance, node: Node) -> dict[str, Any]:
    """One element of ``/v1/catalog/service/{name}``."""
    host, port = _address(instance.endpoint)
    registration = instance.registration
    return {
        **_node(host, node, "NodeMeta"),
        "ServiceID": registration.tool_id,
        "ServiceName": instance.service,
        "ServiceAddress": host,
        "ServicePort": port,
        "ServiceTags": tags_of(instance.tool.digest),
        "ServiceMeta": _meta(instance),
        "ServiceTaggedAddresses": {},
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceEnableTagOverride": False,
        "CreateIndex": instance.tool.created_version,
        "ModifyIndex": instance.tool.version,
    }
