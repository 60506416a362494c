"""Consul's read API, served by the registry: agent, status, catalog and health.

Existing Consul clients (Prometheus's ``consul_sd_configs``, py-consul,
node-consul, consul-template-style scripts) point at the registry and find
tools as services (see :mod:`omninode_bridge.api.consul.mapping`). Every
answer carries ``X-Consul-Index`` (at least 1, never going down),
``X-Consul-KnownLeader: true`` and ``X-Consul-LastContact: 0``. Writes, DNS,
KV and the ACL API are not offered. When reads need a token, Consul's
``X-Consul-Token`` header and ``?token=`` are read like ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from omninode_bridge.api.auth import PRINCIPAL_KEY, bearer_scheme
from omninode_bridge.api.consul.blocking import block, parse_wait
from omninode_bridge.api.consul.filter import compile_filter
from omninode_bridge.api.consul.mapping import (
    Instance,
    Node,
    catalog_entry,
    health_entry,
    instances_of,
    tags_of,
)
from omninode_bridge.api.routes.common import State
from omninode_bridge.errors import RegistryUnavailableError
from omninode_bridge.services.live_view import Digest, LiveTool, LiveView

__all__ = ["live_view", "router"]

router = APIRouter(prefix="/v1", tags=["consul"], include_in_schema=False)

_HEALTH_FIELDS = frozenset({"Node", "Service", "Checks"})
_CATALOG_FIELDS = frozenset(
    {
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "NodeMeta",
        "ServiceID",
        "ServiceName",
        "ServiceAddress",
        "ServicePort",
        "ServiceTags",
        "ServiceMeta",
    }
)


async def _consul_reader(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    x_consul_token: Annotated[str | None, Header(max_length=512)] = None,
    token: Annotated[str | None, Query(max_length=512)] = None,
) -> None:
    if not state.settings.reads_require_token:
        return
    secret = x_consul_token or token or (credentials.credentials if credentials else None)
    request.scope[PRINCIPAL_KEY] = await state.tokens.authenticate(secret)


Reader = Annotated[None, Depends(_consul_reader)]
IndexParam = Annotated[int | None, Query(ge=0, le=2**63 - 1)]
WaitParam = Annotated[str | None, Query(max_length=32)]
FilterParam = Annotated[str | None, Query(max_length=4096)]


def _node(state: State) -> Node:
    return Node(name=state.settings.node_name, datacenter=state.settings.datacenter)


def _answer(body: Any, index: int) -> Response:
    return Response(
        body if isinstance(body, bytes) else orjson.dumps(body),
        media_type="application/json",
        headers={
            "X-Consul-Index": str(index),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        },
    )


async def live_view(state: State) -> LiveView:
    """The app's live view, loaded; RegistryUnavailableError (503) while it is not current."""
    view: LiveView = state.live_view
    try:
        await view.ensure_started(state.settings.connect_timeout)
    except TimeoutError:
        raise RegistryUnavailableError("the registry's catalog is not loaded yet") from None
    if not view.current:
        raise RegistryUnavailableError("the registry's catalog is reloading")
    return view


def _selected(instances: list[Instance], wanted_tags: list[str] | None) -> list[Instance]:
    if not wanted_tags:
        return instances
    return [i for i in instances if set(wanted_tags) <= set(tags_of(i.tool.digest))]


def _union_of_tags(tools: list[LiveTool]) -> list[str]:
    """Every tag of ``tools`` in the order of their first appearance by tool_id.

    Tools with one digest have the same tags, so only each digest's first tool
    (the least tool_id) adds any: no sort of the tools is needed.
    """
    first: dict[Digest, str] = {}
    for tool in tools:
        seen = first.get(tool.digest)
        if seen is None or tool.tool_id < seen:
            first[tool.digest] = tool.tool_id
    known: list[str] = []
    for digest in sorted(first, key=first.__getitem__):
        known.extend(t for t in tags_of(digest) if t not in known)
    return known


async def _read(
    state: State,
    key: str | None,
    index: int | None,
    wait: str | None,
    filter_text: str | None,
    fields: frozenset[str],
) -> tuple[LiveView, Callable[[Mapping[str, Any]], bool] | None, Node]:
    """What every read route does first: check its parameters (before any wait), load the
    view, block until ``key``'s version moves past ``index``. The predicate is ``None``
    when there is no filter."""
    seconds = parse_wait(wait)
    keep = compile_filter(filter_text, fields) if filter_text else None
    view = await live_view(state)
    await block(view, key, index, seconds, state.stopping)
    return view, keep, _node(state)


@router.get("/agent/self")
async def agent_self(state: State, _: Reader) -> Response:
    """The registry as a Consul agent: ``Config.Datacenter`` and ``Config.NodeName``."""
    node = _node(state)
    body = {
        "Config": {
            "Datacenter": node.datacenter,
            "NodeName": node.name,
            "NodeID": "",
            "Server": True,
            "Version": "1.18.0",
            "Revision": "toolreg",
        },
        "Member": {"Name": node.name, "Addr": "127.0.0.1", "Port": 8301, "Status": 1, "Tags": {}},
        "Meta": {"toolreg": "true"},
    }
    return _answer(body, 1)


@router.get("/status/leader")
async def status_leader(state: State, _: Reader) -> Response:
    """Always a leader: the registry's database is the source of truth."""
    return _answer("127.0.0.1:8300", 1)


@router.get("/catalog/services")
async def catalog_services(
    state: State,
    _: Reader,
    index: IndexParam = None,
    wait: WaitParam = None,
    filter: FilterParam = None,
) -> Response:
    """Every service with the union of its instances' tags."""
    view, keep, node = await _read(state, None, index, wait, filter, _CATALOG_FIELDS)

    def render() -> bytes:
        services: dict[str, list[str]] = {}
        if keep is None:  # from the view's index and digests: nothing to decode
            for name in view.names():
                services[name] = _union_of_tags(view.members(name))
            return orjson.dumps(services)
        for instance in instances_of(list(view.tools())):
            if keep(catalog_entry(instance, node)):
                known = services.setdefault(instance.service, [])
                known.extend(t for t in tags_of(instance.tool.digest) if t not in known)
        return orjson.dumps(services)

    # Computed once per change of the view, however many clients ask.
    return _answer(view.memo(("catalog-services", filter), render), view.version())


@router.get("/catalog/service/{name}")
async def catalog_service(
    name: str,
    state: State,
    _: Reader,
    index: IndexParam = None,
    wait: WaitParam = None,
    tag: Annotated[list[str] | None, Query()] = None,
    filter: FilterParam = None,
) -> Response:
    """The instances of ``name`` as flat catalog entries (an unknown name: ``[]``)."""
    view, keep, node = await _read(state, name, index, wait, filter, _CATALOG_FIELDS)
    instances = _selected(instances_of(view.members(name), name), tag)
    entries = [catalog_entry(i, node) for i in instances]
    return _answer([e for e in entries if keep is None or keep(e)], view.version(name))


@router.get("/health/service/{name}")
async def health_service(
    name: str,
    state: State,
    _: Reader,
    index: IndexParam = None,
    wait: WaitParam = None,
    tag: Annotated[list[str] | None, Query()] = None,
    passing: Annotated[str | None, Query(max_length=8)] = None,
    filter: FilterParam = None,
) -> Response:
    """``[{Node, Service, Checks}]`` of ``name``; ``passing``: only instances whose checks pass."""
    only_passing = passing is not None and passing.lower() not in ("0", "false")
    view, keep, node = await _read(state, name, index, wait, filter, _HEALTH_FIELDS)

    def render() -> bytes:
        entries = []
        for instance in _selected(instances_of(view.members(name), name), tag):
            entry = health_entry(instance, node)
            if only_passing and any(c["Status"] != "passing" for c in entry["Checks"]):
                continue
            if keep is None or keep(entry):
                entries.append(entry)
        return orjson.dumps(entries)

    # Clients woken together by one change share one rendering of the same answer.
    key = ("health", name, only_passing, tuple(tag or ()), filter)
    return _answer(view.memo(key, render), view.version(name))
