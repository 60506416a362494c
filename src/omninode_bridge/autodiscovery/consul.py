"""The Consul discovery source: services registered in Consul become tools.

Each Consul service *instance* (``Service.ID``) becomes a tool of that id.
Its operations are the names of the services it is an instance of, each with
the endpoint ``<scheme>://<Service.Address or Node.Address>:<Port><path>``
(scheme and path from ``Service.Meta.endpoint_scheme``/``endpoint_path``,
else ``http`` and ``/``); a service named ``node-type:<type>`` (or
``Service.Meta.node_type``) gives the node type, else ``effect``; the other
string ``Service.Meta`` values become metadata, and the tags other than the
node type become ``metadata.tags``. That is exactly the inverse of the
registry's own Consul-compatible API, so one registry can follow another's
catalog (a federation) with nothing in between.

Consul keeps no change history, so :meth:`ConsulSource.watch` follows
``/v1/catalog/services`` with blocking queries (at most ``wait`` seconds
each), lists the services' health after each answer, and reports the
difference from what it reported last as PUT and DELETE events at the new
``X-Consul-Index``. An instance leaves when it disappears, or when one of its
checks has stayed critical for longer than ``critical_grace`` seconds (the
registry's TTL). An index that goes backwards (a Consul restarted on new
data) and a watch with nothing reported before are "history lost": the
bridge lists everything again. An unreachable Consul is "unavailable": the
bridge removes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from omninode_bridge.autodiscovery.source import (
    SourceEntry,
    SourceEvent,
    SourceEventKind,
    SourceHistoryLostError,
    SourceSnapshot,
    SourceUnavailableError,
)
from omninode_bridge.errors import ConfigurationError
from omninode_bridge.models import NodeType

__all__ = ["ConsulSource", "parse_address"]

NODE_TYPE_PREFIX = "node-type:"
DEFAULT_NODE_TYPE = NodeType.EFFECT.value
REASON_GONE = "consul: instance deregistered"
REASON_CRITICAL = "consul: critical for longer than the TTL"
_OWN_META = {"tool_id", "node_type", "endpoint_path", "endpoint_scheme"}
_NODE_TYPES = {t.value for t in NodeType}


def parse_address(value: str, variable: str = "TOOLREG_CONSUL_ADDRESS") -> str:
    """``http(s)://host:port`` of a Consul agent (``host:port`` works too; port 8500 by default).

    Raises ConfigurationError naming ``variable``; never repeats credentials.
    """
    raw = value.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port or 8500
    except ValueError:
        raise ConfigurationError(f"{variable}: is not a host:port or http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{variable}: must look like http://host:8500")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def _index(response: httpx.Response) -> int:
    raw = response.headers.get("X-Consul-Index")
    if raw is None or not raw.isdigit():
        raise SourceUnavailableError(f"{response.request.url.path}: no X-Consul-Index header")
    return int(raw)


class ConsulSource:
    """Reads services from a Consul agent's HTTP API (or a registry that speaks it)."""

    def __init__(
        self,
        address: str,
        services: Sequence[str] = (),
        token: str | None = None,
        *,
        timeout: float = 5.0,
        wait: float = 10.0,
        critical_grace: float = 300.0,
    ) -> None:
        self.address = parse_address(address, "address")
        self.services = tuple(services)
        self.wait = wait
        self.critical_grace = critical_grace
        self._headers = {"X-Consul-Token": token} if token else {}
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None  # opened on first use, again after aclose
        self._reported: dict[str, bytes] | None = None  # what the bridge was last told
        self._revision = 0
        self._critical_since: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"consul:{self.address}"

    @property
    def description(self) -> str:
        return f"Consul at {self.address}"

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # A blocking query may take `wait` plus Consul's jitter (wait/16) to answer.
            timeout = httpx.Timeout(self._timeout, read=self._timeout + self.wait * 17 / 16)
            self._http = httpx.AsyncClient(
                base_url=self.address, headers=self._headers, timeout=timeout
            )
        return self._http

    # -- reading Consul -----------------------------------------------------------

    async def _get(self, path: str, **params: Any) -> tuple[int, Any]:
        try:
            response = await self._client().get(path, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(
                f"{self.description}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise SourceUnavailableError(
                f"{self.description}: {path} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            return _index(response), orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise SourceUnavailableError(f"{self.description}: {path} is not JSON") from exc

    async def _list(self) -> tuple[int, dict[str, bytes]]:
        """Every instance now, as registration JSON by tool id, and the largest index seen."""
        index, services = await self._get("/v1/catalog/services")
        names = [n for n in services if not self.services or n in self.services]
        names += [n for n in services if n.startswith(NODE_TYPE_PREFIX) and n not in names]
        parts: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for name in names:
            service_index, entries = await self._get(f"/v1/health/service/{quote(name, safe='')}")
            index = max(index, service_index)
            for entry in entries:
                service_id = str(entry.get("Service", {}).get("ID") or "")
                if service_id:
                    parts.setdefault(service_id, []).append((name, entry))
        now = time.monotonic()
        found: dict[str, bytes] = {}
        for tool_id, entries in parts.items():
            if self._too_long_critical(tool_id, entries, now):
                continue
            registration = _registration(tool_id, entries)
            if registration is not None:
                found[tool_id] = orjson.dumps(registration, option=orjson.OPT_SORT_KEYS)
        return index, found

    def _too_long_critical(
        self, tool_id: str, entries: list[tuple[str, dict[str, Any]]], now: float
    ) -> bool:
        critical = any(
            check.get("Status") == "critical"
            for _, entry in entries
            for check in entry.get("Checks") or []
        )
        if not critical:
            self._critical_since.pop(tool_id, None)
            return False
        since = self._critical_since.setdefault(tool_id, now)
        return now - since > self.critical_grace

    # -- the DiscoverySource port -------------------------------------------------

    async def snapshot(self) -> SourceSnapshot:
        """Every instance now, at the largest ``X-Consul-Index`` seen while listing."""
        index, found = await self._list()
        self._reported = found
        self._revision = index
        entries = [SourceEntry(self._key(t), t, v) for t, v in sorted(found.items())]
        return SourceSnapshot(entries=entries, revision=index)

    def _key(self, tool_id: str) -> str:
        return f"{self.address}/{tool_id}"

    @asynccontextmanager
    async def watch(self, start_revision: int) -> AsyncIterator[AsyncIterator[SourceEvent]]:
        """Changes since what was last reported, found by blocking queries (see the module)."""
        if self._reported is None:
            raise SourceHistoryLostError(
                f"{self.description} keeps no history: list it again", oldest_revision=0
            )
        await self._get("/v1/agent/self")  # reachable: the watch is established
        yield self._changes()

    async def _changes(self) -> AsyncIterator[SourceEvent]:
        while True:
            before = self._revision
            index, _ = await self._get(
                "/v1/catalog/services", index=before, wait=f"{round(self.wait * 1000)}ms"
            )
            if index < before:
                raise SourceHistoryLostError(
                    f"{self.description}: the index went back from {before} to {index}"
                )
            index, found = await self._list()
            revision = max(index, before)
            reported = self._reported or {}
            for tool_id in sorted(set(reported) - set(found)):
                del reported[tool_id]
                reason = REASON_CRITICAL if tool_id in self._critical_since else REASON_GONE
                yield SourceEvent(
                    SourceEventKind.DELETE, self._key(tool_id), tool_id, revision, reason=reason
                )
            for tool_id, value in sorted(found.items()):
                if reported.get(tool_id) != value:
                    reported[tool_id] = value
                    yield SourceEvent(
                        SourceEventKind.PUT, self._key(tool_id), tool_id, revision, value=value
                    )
            self._reported = reported
            self._revision = revision
            await asyncio.sleep(0)  # a quiet Consul answers at `wait`: no busy loop


def _registration(tool_id: str, entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The registration of one instance from its health entries (one per service)."""
    node_type = None
    endpoints: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    tags: list[str] = []
    for name, entry in entries:
        service = entry.get("Service") or {}
        node = entry.get("Node") or {}
        meta = service.get("Meta") or {}
        if name.startswith(NODE_TYPE_PREFIX):
            node_type = node_type or name.removeprefix(NODE_TYPE_PREFIX)
        if meta.get("node_type") in _NODE_TYPES:
            node_type = meta["node_type"]
        for key, value in meta.items():
            if key not in _OWN_META and isinstance(value, str):
                metadata[key] = value
        tags.extend(t for t in service.get("Tags") or [] if isinstance(t, str) and t not in tags)
        if name.startswith(NODE_TYPE_PREFIX):
            continue
        address = service.get("Address") or node.get("Address")
        port = service.get("Port")
        if not address or not isinstance(port, int):
            continue
        host = f"[{address}]" if ":" in address else address
        scheme = meta.get("endpoint_scheme") if meta.get("endpoint_scheme") == "https" else "http"
        path = meta.get("endpoint_path") or "/"
        endpoints[name] = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/'}"
    if not endpoints:
        return None  # nothing to call: not a tool
    node_type = node_type if node_type in _NODE_TYPES else DEFAULT_NODE_TYPE
    extra_tags = [t for t in tags if t != node_type]
    if extra_tags:
        metadata["tags"] = extra_tags
    return {
        "tool_id": tool_id,
        "node_type": node_type,
        "capabilities": {"operations": sorted(endpoints)},
        "endpoints": endpoints,
        "metadata": metadata,
    }
