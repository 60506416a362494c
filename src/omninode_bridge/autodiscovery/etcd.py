"""The etcd v3 discovery source: a key ``<prefix><tool_id>`` per tool, kept alive by a lease.

Built on `aetcd <https://pypi.org/project/aetcd/>`_, an asyncio client for
etcd's native gRPC API (works with etcd 3.4 and later). Every unary call has a
deadline; the long-lived watch stream has none but is guarded by gRPC
keepalive pings, so a dead peer is noticed within seconds. After any failure
the client is thrown away and the next call opens a fresh channel to the next
endpoint: gRPC's own reconnect backoff (up to two minutes) never delays
recovery.

Plain ``http://`` endpoints only: the client has no TLS support yet, so
``https://`` is refused at start rather than silently downgraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aetcd
import aetcd.rpc
import aetcd.utils

from omninode_bridge.autodiscovery.source import (
    SourceEntry,
    SourceError,
    SourceEvent,
    SourceEventKind,
    SourceHistoryLostError,
    SourceSnapshot,
    SourceUnavailableError,
)
from omninode_bridge.errors import ConfigurationError

__all__ = ["DEFAULT_TIMEOUT", "EtcdEndpoint", "EtcdSource", "parse_endpoints"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
DEFAULT_PORT = 2379
PAGE_SIZE = 256  # keys per Range page while listing the prefix
MAX_OWNER_LENGTH = 300  # tool_owners.owner is VARCHAR(300)
REASON_DELETED = "etcd key deleted"
REASON_EXPIRED = "etcd lease expired"
_CHANNEL_OPTIONS: dict[str, Any] = {
    # Ping a quiet stream every 10 s; etcd's default --grpc-keepalive-min-time is 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
}
# What the client raises for an unreachable, failing or timed-out etcd.
_CLIENT_ERRORS = (aetcd.ClientError, aetcd.rpc.AioRpcError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class EtcdEndpoint:
    """One etcd member's client URL."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_endpoints(value: str, variable: str = "TOOLREG_ETCD_ENDPOINTS") -> list[EtcdEndpoint]:
    """Comma-separated ``http://host:port`` URLs (``host:port`` and a missing port work too).

    Raises ConfigurationError naming ``variable``; the message never repeats
    credentials given in a URL.
    """
    endpoints: list[EtcdEndpoint] = []
    for raw in (part.strip() for part in value.split(",")):
        if not raw:
            continue
        text = raw if "://" in raw else f"http://{raw}"
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"{variable}: an endpoint has an invalid port") from None
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"{variable}: credentials in endpoint URLs are not supported (etcd auth is not "
                "implemented); give http://host:port"
            )
        if parts.scheme == "https":
            raise ConfigurationError(
                f"{variable}: https:// (TLS) endpoints are not supported by this etcd client; "
                "use http://host:port on a trusted network"
            )
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigurationError(f"{variable}: endpoints must look like http://host:port")
        endpoints.append(EtcdEndpoint(parts.hostname, port or DEFAULT_PORT))
    if not endpoints:
        raise ConfigurationError(f"{variable}: no etcd endpoint given (http://host:port)")
    return endpoints


class EtcdSource:
    """Announcements under one etcd key prefix (see :class:`~.source.DiscoverySource`).

    ``timeout`` bounds every unary call and the creation of a watch, in
    seconds. The source is not safe for concurrent use by several bridges;
    give each its own.
    """

    def __init__(
        self,
        endpoints: Sequence[EtcdEndpoint] | str,
        prefix: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoints = (
            parse_endpoints(endpoints) if isinstance(endpoints, str) else list(endpoints)
        )
        if not self.endpoints:
            raise ConfigurationError("TOOLREG_ETCD_ENDPOINTS: no etcd endpoint given")
        if not prefix:
            raise ConfigurationError("TOOLREG_ETCD_PREFIX: must not be empty")
        if len(f"source:etcd:{prefix}") > MAX_OWNER_LENGTH:
            raise ConfigurationError(
                f"TOOLREG_ETCD_PREFIX: at most {MAX_OWNER_LENGTH - 12} characters allowed"
            )
        if timeout <= 0:
            raise ConfigurationError("etcd timeout must be positive")
        self.prefix = prefix
        self.timeout = timeout
        self._prefix_bytes = prefix.encode()
        self._range_end = aetcd.utils.prefix_range_end(self._prefix_bytes)
        self._client: aetcd.Client | None = None
        self._next_endpoint = 0

    @property
    def name(self) -> str:
        return f"etcd:{self.prefix}"

    @property
    def description(self) -> str:
        return f"etcd {','.join(str(e) for e in self.endpoints)} prefix {self.prefix}"

    @property
    def endpoint(self) -> EtcdEndpoint:
        """The endpoint the current (or next) connection uses."""
        return self.endpoints[self._next_endpoint % len(self.endpoints)]

    # -- connection -------------------------------------------------------------

    async def _connect(self) -> aetcd.Client:
        if self._client is None:
            endpoint = self.endpoint
            client = aetcd.Client(
                host=endpoint.host,
                port=endpoint.port,
                timeout=self.timeout,
                options=dict(_CHANNEL_OPTIONS),
            )
            await client.connect()  # opens the channel; no round trip yet
            self._client = client
        return self._client

    async def _discard(self) -> None:
        """Drop the client after a failure; the next call reconnects to the next endpoint."""
        await self.aclose()
        self._next_endpoint += 1

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await client.close()
        except _CLIENT_ERRORS as exc:
            # The channel is dropped either way; a failed goodbye changes nothing
            # (and is usually why it is being dropped), so it is only logged.
            logger.debug("closing the etcd client for %s raised %r", self.endpoint, exc)

    def _translate(self, exc: BaseException, doing: str) -> SourceError:
        where = f"etcd {self.endpoint}"
        if isinstance(exc, aetcd.RevisionCompactedError):
            return SourceHistoryLostError(
                f"{where}: {doing}: history compacted up to revision {exc.compacted_revision}",
                int(exc.compacted_revision),
            )
        if isinstance(exc, aetcd.rpc.AioRpcError):
            code = exc.code()
            if code == aetcd.rpc.StatusCode.OUT_OF_RANGE:  # a paged read hit a compaction
                return SourceHistoryLostError(f"{where}: {doing}: {exc.details()}")
            return SourceUnavailableError(f"{where}: {doing}: {code.name}: {exc.details()}")
        if isinstance(exc, TimeoutError):
            return SourceUnavailableError(f"{where}: {doing}: no answer within {self.timeout} s")
        return SourceUnavailableError(f"{where}: {doing}: {exc}")

    # -- decoding ---------------------------------------------------------------

    def _names(self, key: bytes) -> tuple[str, str]:
        # Keys are bytes in etcd; undecodable ones still get a printable name,
        # and the replacement character then fails tool_id validation.
        return key.decode(errors="replace"), key[len(self._prefix_bytes) :].decode(errors="replace")

    # -- the DiscoverySource interface ---------------------------------------------

    async def snapshot(self) -> SourceSnapshot:
        """List the prefix page by page, every page read at the first page's revision."""
        entries: list[SourceEntry] = []
        revision = 0
        start = self._prefix_bytes
        try:
            client = await self._connect()
            while True:
                request = aetcd.rpc.RangeRequest(
                    key=start, range_end=self._range_end, limit=PAGE_SIZE, revision=revision
                )
                # The client's get_prefix cannot page, so the Range RPC is called
                # on its stub directly, with the same deadline and metadata.
                response = await client.kvstub.Range(
                    request, timeout=self.timeout, metadata=client.metadata
                )
                if revision == 0:
                    revision = int(response.header.revision)
                for kv in response.kvs:
                    key, tool_id = self._names(kv.key)
                    entries.append(SourceEntry(key=key, tool_id=tool_id, value=bytes(kv.value)))
                if not response.more or not response.kvs:
                    return SourceSnapshot(entries=entries, revision=revision)
                start = bytes(response.kvs[-1].key) + b"\x00"
        except _CLIENT_ERRORS as exc:
            error = self._translate(exc, f"listing {self.prefix}")
            if isinstance(error, SourceUnavailableError):
                await self._discard()
            raise error from exc

    @asynccontextmanager
    async def watch(self, start_revision: int) -> AsyncIterator[AsyncIterator[SourceEvent]]:
        try:
            client = await self._connect()
            handle = await client.watch_prefix(
                self._prefix_bytes, start_revision=start_revision, prev_kv=True
            )
        except _CLIENT_ERRORS as exc:
            error = self._translate(exc, f"watching {self.prefix} from revision {start_revision}")
            await self._discard()
            raise error from exc
        events = _EtcdEvents(self, client, handle)
        async with events:
            yield events

    async def delete_reason(self, client: aetcd.Client, lease_id: int) -> str:
        """Why a key bound to ``lease_id`` went: its lease is gone, or it was deleted."""
        if lease_id == 0:
            return REASON_DELETED
        info = await client.get_lease_info(lease_id, keys=False)
        return REASON_EXPIRED if int(info.TTL) == -1 else REASON_DELETED


class _EtcdEvents:
    """The events of one etcd watch, as :class:`SourceEvent`; cancels the watch on exit."""

    def __init__(self, source: EtcdSource, client: aetcd.Client, handle: Any) -> None:
        self._source = source
        self._client = client
        self._handle = handle
        self._iterator: AsyncIterator[Any] = handle.__aiter__()
        self._failed = False
        self._ended_leases: set[int] = set()

    def __aiter__(self) -> _EtcdEvents:
        return self

    async def __anext__(self) -> SourceEvent:
        source = self._source
        try:
            event = await self._iterator.__anext__()
            key, tool_id = source._names(event.kv.key)
            revision = int(event.kv.mod_revision)
            if event.kind == aetcd.EventKind.PUT:
                return SourceEvent(
                    SourceEventKind.PUT, key, tool_id, revision, value=bytes(event.kv.value)
                )
            lease = int(event.prev_kv.lease) if event.prev_kv is not None else 0
            reason = REASON_EXPIRED if lease in self._ended_leases else REASON_DELETED
            if lease and reason == REASON_DELETED:
                reason = await source.delete_reason(self._client, lease)
                if reason == REASON_EXPIRED:  # a lease never comes back: remember it
                    self._ended_leases.add(lease)
            return SourceEvent(SourceEventKind.DELETE, key, tool_id, revision, reason=reason)
        except StopAsyncIteration:
            # The client ends a watch only when its stream was shut down.
            self._failed = True
            await source._discard()
            raise SourceUnavailableError(f"etcd {source.endpoint}: the watch ended") from None
        except _CLIENT_ERRORS as exc:
            self._failed = True
            error = source._translate(exc, f"watching {source.prefix}")
            await source._discard()
            raise error from exc

    async def __aenter__(self) -> _EtcdEvents:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._failed or self._source._client is not self._client:
            return  # the client is gone with its watch
        try:
            async with asyncio.timeout(self._source.timeout):
                await self._handle.cancel()
        except _CLIENT_ERRORS as cancel_error:
            logger.debug("cancelling the etcd watch raised %r; dropping the client", cancel_error)
            await self._source._discard()
