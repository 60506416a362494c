"""How registrations look through the MCP registry's eyes (``server.json``, schema 2025-12-11).

A registration is an MCP server when it declares an MCP endpoint:
``endpoints.mcp`` (a ``streamable-http`` remote) and/or ``endpoints["mcp-sse"]``
(an ``sse`` remote). Its entry is built from its metadata:

- ``name``: ``metadata.mcp_name`` when it is a valid server name
  (``namespace/name``, 3-200 characters), else ``io.omninode/<tool_id>``
  (the namespace is ``TOOLREG_MCP_NAMESPACE``) with every character outside
  ``[a-zA-Z0-9._-]`` turned into ``-``;
- ``version``: ``metadata.version`` when it is a specific version (not a range,
  not ``latest``, at most 255 characters), else ``0.0.0``;
- ``description`` (``metadata.description``, cut to 100 characters; else one
  naming the node type and tool), ``title`` (``metadata.title``), ``websiteUrl``
  (``metadata.website_url``) and ``repository`` (``metadata.repository`` with
  ``url`` and ``source``) when they are well-formed.

Tools that share a name and a version (replicas) make one entry whose remotes
are all of theirs, in tool_id order; tools that share a name with other
versions are that server's versions. ``_meta["io.modelcontextprotocol.registry/official"]``
says ``status``: ``active`` while one of the version's tools is healthy,
``deprecated`` while every one is critical or stale (a deleted tool is gone,
not ``deleted``); ``publishedAt`` (the earliest registration), ``updatedAt``
(the latest change of a registration; a health change does not move it) and
``isLatest``. ``_meta["io.omninode/toolreg"]`` lists the instances with their
health (healthy, stale or critical, as the change feed last said).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.fields import ENDPOINT_MAX_LENGTH, check_url
from omninode_bridge.services.live_view import LiveTool, LiveView

__all__ = [
    "OFFICIAL_META",
    "REMOTE_TYPES",
    "SCHEMA_URL",
    "TOOLREG_META",
    "Catalog",
    "ServerVersion",
    "newer_first",
    "server_name",
]

SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
OFFICIAL_META = "io.modelcontextprotocol.registry/official"
TOOLREG_META = "io.omninode/toolreg"
# Endpoint name -> remote transport type.
REMOTE_TYPES = {"mcp": "streamable-http", "mcp-sse": "sse"}
DEFAULT_VERSION = "0.0.0"

_NAME = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
_NOT_NAME_CHARS = re.compile(r"[^a-zA-Z0-9._-]")
_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
# What the MCP registry rejects as a version range: ^1.2, ~1.2, >=1, 1.x, 1.*, 1 - 2, 1 || 2.
_RANGE = re.compile(r"[\^~<>=*|\s]|(^|\.)[xX](\.|$)")
_HEALTH_ORDER = ("healthy", "stale", "critical")


def server_name(
    tool: LiveTool, namespace: str, registration: ModelToolRegistration | None = None
) -> str | None:
    """The server name of ``tool``; ``None`` when it declares no MCP endpoint or none fits.

    ``registration``: the tool's, when the caller has decoded it already."""
    if not tool.digest.endpoints.intersection(REMOTE_TYPES):
        return None  # no MCP endpoint: not worth decoding
    if registration is None:
        registration = tool.registration
    if not any(registration.endpoints.get(key) for key in REMOTE_TYPES):
        return None
    declared = registration.metadata.get("mcp_name")
    if isinstance(declared, str) and 3 <= len(declared) <= 200 and _NAME.match(declared):
        return declared
    derived = f"{namespace}/{_NOT_NAME_CHARS.sub('-', registration.tool_id)}"
    return derived if len(derived) <= 200 else None


def _version(metadata: dict[str, Any]) -> str:
    value = metadata.get("version")
    if (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and value != "latest"
        and not _RANGE.search(value)
    ):
        return value
    return DEFAULT_VERSION


def _text(metadata: dict[str, Any], key: str, limit: int) -> str | None:
    value = metadata.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _http_url(value: Any) -> str | None:
    """``value`` when it is a URL a registration's endpoint could be, else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        return check_url(value, ENDPOINT_MAX_LENGTH)
    except ValueError:
        return None


def _repository(metadata: dict[str, Any]) -> dict[str, str] | None:
    value = metadata.get("repository")
    if not isinstance(value, dict):
        return None
    url, source = _http_url(value.get("url")), value.get("source")
    if url is None or not isinstance(source, str) or not source:
        return None
    out = {"url": url, "source": source}
    for key in ("id", "subfolder"):
        if isinstance(value.get(key), str):
            out[key] = value[key]
    return out


def _rfc3339(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _semver_key(version: str) -> tuple[Any, ...] | None:
    """Semantic-version precedence as a sortable key; ``None`` for other versions."""
    match = _SEMVER.match(version)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    release = (int(major), int(minor), int(patch))
    if pre is None:
        return (*release, 1, ())  # a release outranks its pre-releases
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*release, 0, idents)


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """One version of one MCP server: the tools (replicas) that serve it."""

    name: str
    version: str
    instances: tuple[LiveTool, ...]
    published_at: datetime | None
    updated_at: datetime | None
    is_latest: bool = False

    @property
    def description(self) -> str:
        """``metadata.description`` (at most 100 characters), else one naming the tool."""
        first = self.instances[0].registration
        return (
            _text(first.metadata, "description", 100)
            or f"{first.node_type.value} tool {first.tool_id}"[:100]
        )

    @property
    def health(self) -> str:
        """The best health of the version's tools (healthy, stale, critical)."""
        return min((t.health for t in self.instances), key=_HEALTH_ORDER.index)

    def as_json(self) -> dict[str, Any]:
        """The registry API's ``ServerResponse``: ``{server, _meta}``."""
        registrations = [t.registration for t in self.instances]  # decoded once each
        metadata = registrations[0].metadata
        server: dict[str, Any] = {
            "$schema": SCHEMA_URL,
            "name": self.name,
            "description": self.description,
            "version": self.version,
        }
        title = _text(metadata, "title", 100)
        if title is not None:
            server["title"] = title
        website = _http_url(metadata.get("website_url"))
        if website is not None:
            server["websiteUrl"] = website
        repository = _repository(metadata)
        if repository is not None:
            server["repository"] = repository
        remotes: list[dict[str, str]] = []
        for registration in registrations:
            for key, kind in REMOTE_TYPES.items():
                url = registration.endpoints.get(key)  # checked when it was registered
                if url and {"type": kind, "url": url} not in remotes:
                    remotes.append({"type": kind, "url": url})
        server["remotes"] = remotes
        health = self.health
        official = {
            "status": "active" if health == "healthy" else "deprecated",
            "publishedAt": _rfc3339(self.published_at),
            "updatedAt": _rfc3339(self.updated_at),
            "isLatest": self.is_latest,
        }
        instances = [
            {
                "toolId": r.tool_id,
                "nodeType": r.node_type.value,
                "health": t.health,
                "lastHeartbeat": _rfc3339(r.last_heartbeat),
            }
            for t, r in zip(self.instances, registrations, strict=True)
        ]
        return {
            "server": server,
            "_meta": {
                OFFICIAL_META: {k: v for k, v in official.items() if v is not None},
                TOOLREG_META: {"health": health, "instances": instances},
            },
        }


def newer_first(a: ServerVersion, b: ServerVersion) -> int:
    """Order of versions, newest first: by semantic version when both have one, else
    by publication (the MCP registry's rule), then by the version text. Reads only
    ``version`` and ``published_at``."""
    ka, kb = _semver_key(a.version), _semver_key(b.version)
    if ka is not None and kb is not None and ka != kb:
        return -1 if ka > kb else 1
    pa, pb = a.published_at, b.published_at
    if (ka is None or kb is None) and pa is not None and pb is not None and pa != pb:
        return -1 if pa > pb else 1
    return (a.version < b.version) - (a.version > b.version)


def _versions_of(
    name: str, tools: list[tuple[LiveTool, ModelToolRegistration]]
) -> list[ServerVersion]:
    by_version: dict[str, list[tuple[LiveTool, ModelToolRegistration]]] = {}
    for tool, registration in tools:
        by_version.setdefault(_version(registration.metadata), []).append((tool, registration))
    versions = []
    for version, members in by_version.items():
        members.sort(key=lambda m: m[0].tool_id)
        registered = [r.registered_at for _, r in members]
        changed = [r.updated_at or r.registered_at for _, r in members]
        versions.append(
            ServerVersion(
                name,
                version,
                tuple(t for t, _ in members),
                min((d for d in registered if d is not None), default=None),
                max((d for d in changed if d is not None), default=None),
            )
        )
    versions.sort(key=functools.cmp_to_key(newer_first))
    versions[0] = replace(versions[0], is_latest=True)
    return versions


def build_catalog(tools: Iterable[LiveTool], namespace: str) -> dict[str, list[ServerVersion]]:
    """Every MCP server by name (sorted), each with its versions newest first.

    Only tools whose digest names an MCP endpoint are decoded."""
    by_name: dict[str, list[tuple[LiveTool, ModelToolRegistration]]] = {}
    for tool in tools:
        if not tool.digest.endpoints.intersection(REMOTE_TYPES):
            continue
        registration = tool.registration
        name = server_name(tool, namespace, registration)
        if name is not None:
            by_name.setdefault(name, []).append((tool, registration))
    return {name: _versions_of(name, by_name[name]) for name in sorted(by_name)}


class Catalog:
    """The MCP servers of one live view, rebuilt only when the view's version moves."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._built_for: int | None = None
        self._servers: dict[str, list[ServerVersion]] = {}
        self._ordered: list[ServerVersion] = []

    def _refresh(self, view: LiveView) -> None:
        key = view.version()  # moves with every change, health included, and on reloads
        if key != self._built_for:
            mcp = view.tools(lambda d: not d.endpoints.isdisjoint(REMOTE_TYPES))
            self._servers = build_catalog(mcp, self.namespace)
            self._ordered = [v for versions in self._servers.values() for v in versions]
            self._built_for = key

    def all(self, view: LiveView) -> list[ServerVersion]:
        """Every version of every server: by name, each name's versions newest first."""
        self._refresh(view)
        return self._ordered

    def versions(self, view: LiveView, name: str) -> list[ServerVersion] | None:
        """The versions of ``name``, newest first; ``None`` when there is no such server."""
        self._refresh(view)
        return self._servers.get(name)
