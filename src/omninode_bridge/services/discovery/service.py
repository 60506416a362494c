"""ToolDiscoveryService: the usage guide's discovery sketch, built for real.

``discover_tool(capability)`` and ``route_request(operation, data)`` keep the
guide's names and signatures. Candidates come from a live in-memory index (no
query per call), the load is spread by power of two choices, a tool that
cannot be reached is skipped and ejected for a growing backoff, and every
failure is a typed :class:`~omninode_bridge.errors.DiscoveryError` (also a
``RuntimeError``, which the guide's callers catch). All calls share one
pooled ``httpx.AsyncClient``.

The index loads on first use (or ``await start()``) and follows the change
feed from then on; close the service with ``await aclose()`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from omninode_bridge.errors import (
    DiscoveryError,
    IndexUnavailableError,
    MissingEndpointError,
    NoRoutableToolError,
    RegistryUnavailableError,
    ToolCallError,
    ToolResponseTooLargeError,
    ValidationFailedError,
)
from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.discovery.balancer import PowerOfTwoBalancer
from omninode_bridge.services.discovery.calls import (
    Failure,
    classify,
    ejects,
    read_answer,
    transport_error,
)
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.ejection import EjectionPolicy
from omninode_bridge.services.discovery.explain import RoutingExplanation
from omninode_bridge.services.discovery.index import ToolIndex
from omninode_bridge.services.discovery.metrics import DiscoveryMetrics
from omninode_bridge.services.discovery.registrations import RegistrationCache
from omninode_bridge.services.discovery.sync import DiscoveryTuning, IndexSync
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository
from omninode_bridge.settings import Settings

__all__ = ["ToolDiscoveryService"]

logger = logging.getLogger(__name__)

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The shared, pooled client: timeouts from settings, redirects not followed."""
    timeout = httpx.Timeout(
        connect=settings.http_connect_timeout,
        read=settings.http_read_timeout,
        write=settings.http_read_timeout,
        pool=settings.http_connect_timeout,
    )
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


class ToolDiscoveryService:
    """Discover tools by capability and route requests to them.

    ``settings`` default to the repository's client's settings (TTL, HTTP
    timeouts, attempts, ejection backoff, stale-index grace). ``http_client``
    replaces the shared client (the service then leaves it open on close);
    ``metrics`` may be shared (exporters read its fields); ``tuning``
    replaces the index's background intervals (default: from ``settings``,
    ``TOOLREG_DISCOVERY_*``); ``rng`` seeds the balancer.

    Active health checks plug in through :meth:`set_excluded` /
    :meth:`clear_excluded`: an excluded tool is never chosen.
    """

    def __init__(
        self,
        repository: ToolRegistrationRepository,
        settings: Settings | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        metrics: DiscoveryMetrics | None = None,
        tuning: DiscoveryTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.repository = repository
        self.settings = settings if settings is not None else repository.client.settings
        s = self.settings
        self.metrics = metrics if metrics is not None else DiscoveryMetrics()
        self.index = ToolIndex(DbClock(), s.ttl_seconds, PowerOfTwoBalancer(rng))
        self.registrations = RegistrationCache(
            repository, s.ttl_seconds, capacity=s.discovery_cache_size
        )
        self.ejection = EjectionPolicy(s.eject_base_seconds, s.eject_max_seconds)
        self._sync = IndexSync(
            repository,
            self.index,
            grace_seconds=s.stale_index_grace_seconds,
            tuning=tuning if tuning is not None else DiscoveryTuning.from_settings(s),
            metrics=self.metrics,
            cache=self.registrations,
        )
        self._owns_http = http_client is None
        self.http = http_client if http_client is not None else make_http_client(s)
        self._started = False
        self._closed = False
        self._start_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Load the index and start following changes (idempotent; first use does it too).

        Raises IndexUnavailableError (a RuntimeError) when the database cannot
        be reached; a later call tries again.
        """
        async with self._start_lock:
            if self._closed:
                raise DiscoveryError("this ToolDiscoveryService is closed")
            if self._started:
                return
            try:
                await self._sync.load()
            except RegistryUnavailableError as exc:
                raise IndexUnavailableError(f"cannot load the discovery index: {exc}") from exc
            self._sync.start()
            self._started = True

    async def aclose(self) -> None:
        """Stop following changes and close the HTTP client if the service created it."""
        async with self._start_lock:
            if self._closed:
                return
            self._closed = True
            self._started = False
            await self._sync.stop()
            if self._owns_http:
                await self.http.aclose()

    async def __aenter__(self) -> ToolDiscoveryService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _ready(self) -> None:
        if not self._started:
            await self.start()
        self._sync.check()

    # -- the guide's API -------------------------------------------------------------------

    async def discover_tool(self, capability: str) -> ModelToolRegistration | None:
        """A live tool offering operation ``capability``, chosen by load; ``None`` if none.

        Prefers tools with an endpoint for it; when all that offer it are
        ejected, returns the one due back first. The index holds routing facts
        only: the registration comes from a small LRU or one query by id (a
        tool deleted in between is passed over). Raises IndexUnavailableError
        when the index is stale past the grace period, and what the repository
        raises when the registration must be read.
        """
        if not isinstance(capability, str):
            raise ValidationFailedError([("capability", "must be a string")])
        await self._ready()
        tool = self.index.pick(capability)
        passed_over: set[str] = set()
        while tool is not None:
            registration = await self.registrations.get(tool)
            if registration is not None:
                return registration
            passed_over.add(tool.tool_id)  # deleted; the feed has yet to say so
            tool = self.index.pick(capability, passed_over)
        return None

    async def explain(self, operation: str, limit: int = 5) -> RoutingExplanation:
        """Why each tool declaring ``operation`` is or is not routable now (the first ``limit``).

        Raises IndexUnavailableError when the index is stale past the grace period.
        """
        await self._ready()
        return self.index.explain_routing(operation, limit)

    async def no_routable_tool(self, operation: str) -> NoRoutableToolError:
        """The error for ``operation`` when nothing is routable, with the explanation."""
        explanation = await self.explain(operation)
        return NoRoutableToolError(
            operation, explanation.summary, explanation=explanation.as_dict()
        )

    async def route_request(
        self,
        operation: str,
        data: dict[str, Any],
        *,
        idempotent: bool = False,
        max_attempts: int | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        """POST ``data`` as JSON to a tool's endpoint for ``operation``; its JSON answer.

        A tool that never got the whole request (refused, connect timeout,
        failed while it was written) is ejected and the next one tried, up to
        ``max_attempts`` tools (default ``TOOLREG_ROUTE_MAX_ATTEMPTS``). Once
        the request is written, a read timeout, a lost answer (even a reset:
        the tool may have acted, then died) or a 5xx is retried on another
        tool only when ``idempotent``; a reset still ejects the tool.
        ``timeout`` overrides the settings' HTTP timeouts for this call.

        The answer is streamed and capped at ``TOOLREG_MAX_RESPONSE_BYTES``:
        a larger one is refused from its Content-Length, or cut off once past
        the cap, and its connection closed.

        Raises NoRoutableToolError (names the operation and why each tool is
        out), MissingEndpointError (names tool and operation), ToolCallError
        (names tool, endpoint, status and the start of the body), its
        subclass ToolResponseTooLargeError (names the limit; never retried),
        all RuntimeErrors; IndexUnavailableError past the stale-index grace.
        """
        await self._ready()
        body = _encode(data)
        attempts = max_attempts if max_attempts is not None else self.settings.route_max_attempts
        if attempts < 1:
            raise ValidationFailedError([("max_attempts", "must be at least 1")])
        tried: set[str] = set()
        failures: list[ToolCallError] = []
        for _ in range(attempts):
            tool = self.index.pick(operation, tried)
            if tool is None:
                break
            endpoint = tool.endpoint(operation)
            if not endpoint:
                if failures:
                    break  # report the failures, not a lesser tool
                raise MissingEndpointError(tool.tool_id, operation)
            if failures:
                self.metrics.failed_over()
            tried.add(tool.tool_id)
            outcome = await self._attempt(tool.tool_id, endpoint, body, timeout)
            if not isinstance(outcome, _Failed):
                return outcome
            if not _may_retry(outcome.kind, idempotent):
                self.metrics.call_failed()
                raise outcome.error
            failures.append(outcome.error)
        if failures:
            self.metrics.call_failed()
            raise _all_failed(failures, attempts) from failures[-1].__cause__
        explanation = self.index.explain_routing(operation)
        raise NoRoutableToolError(operation, explanation.summary, explanation=explanation.as_dict())

    async def _attempt(
        self, tool_id: str, endpoint: str, body: bytes, timeout: float | httpx.Timeout | None
    ) -> dict[str, Any] | _Failed:
        """One POST to one tool: its answer, or the error and what it allows next.

        A tool the failure shows to be down is ejected here; one that answers
        is restored if it was ejected.
        """
        balancer = self.index.balancer
        balancer.begin(tool_id)
        try:
            async with self.http.stream(
                "POST",
                endpoint,
                content=body,
                headers=_JSON_HEADERS,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            ) as response:
                result = await read_answer(
                    tool_id, endpoint, response, self.settings.max_response_bytes
                )
        except httpx.HTTPError as exc:
            error = transport_error(tool_id, endpoint, exc)
            error.__cause__ = exc
            if ejects(exc):
                self._eject(tool_id, error)
            return _Failed(error, classify(exc))
        except ToolResponseTooLargeError as too_large:
            return _Failed(too_large, Failure.FINAL)  # the tool acted on the request
        except ToolCallError as answered:
            server_error = answered.status is not None and answered.status >= 500
            return _Failed(answered, Failure.UNKNOWN if server_error else Failure.FINAL)
        finally:
            balancer.end(tool_id)
        self.metrics.call_answered()
        if self.ejection.succeeded(tool_id):
            self.index.restore(tool_id)
        return result

    # -- hooks for health checks and operators ------------------------------------------

    def set_excluded(self, tool_id: str, reason: str) -> None:
        """Never choose ``tool_id`` until :meth:`clear_excluded` (e.g. health ``critical``)."""
        self.index.set_excluded(tool_id, reason)

    def clear_excluded(self, tool_id: str) -> bool:
        """Allow ``tool_id`` again; ``False`` when it was not excluded."""
        return self.index.clear_excluded(tool_id)

    async def routable_tools(self, operation: str) -> list[ModelToolRegistration]:
        """Every tool routable for ``operation`` now, by tool id."""
        await self._ready()
        return await self.registrations.get_many(self.index.routable(operation))

    async def wait_for_update(self) -> None:
        """Return when the index next applies a change; bound it with ``asyncio.timeout``."""
        await self._ready()
        await self._sync.changed()

    def status(self) -> dict[str, Any]:
        """The index's state for health endpoints and logs."""
        stale_since = self._sync.stale_since()
        stale_seconds = None if stale_since is None else self.index.clock.local() - stale_since
        return {
            "started": self._started,
            "tools": len(self.index),
            "cursor": self._sync.cursor,
            "stale_seconds": stale_seconds,
            "grace_seconds": self.settings.stale_index_grace_seconds,
            "ejected": self.index.ejected(),
            "excluded": self.index.excluded(),
            "metrics": self.metrics.as_dict(),
        }

    def _eject(self, tool_id: str, error: ToolCallError) -> None:
        seconds = self.ejection.failed(tool_id)
        self.index.eject(tool_id, seconds)
        self.metrics.tool_ejected()
        logger.info("ejected %s for %.1fs: %s", tool_id, seconds, error)


def _encode(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise ValidationFailedError([("data", f"is not JSON-serializable ({exc})")]) from None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A failed attempt: the error to raise or report, and what it allows next."""

    error: ToolCallError
    kind: Failure


def _may_retry(kind: Failure, idempotent: bool) -> bool:
    """Whether another tool may be tried after a failure of this kind.

    Never sent: always. The tool may have acted (a lost answer, a 5xx): only
    when the operation is idempotent. Final: never.
    """
    return kind is Failure.NOT_SENT or (kind is Failure.UNKNOWN and idempotent)


def _all_failed(failures: list[ToolCallError], attempts: int) -> ToolCallError:
    """One error for a request no tool took: the last tool's, listing every failure."""
    last = failures[-1]
    noun = "tool" if len(failures) == 1 else "tools"
    detail = "; ".join(str(f) for f in failures)
    error = ToolCallError(
        last.tool_id,
        last.endpoint,
        f"no tool took the request ({len(failures)} {noun} tried, "
        f"at most {attempts} attempts): {detail}",
        status=last.status,
    )
    error.body_excerpt = last.body_excerpt  # already quoted in the message
    return error
