"""RegistryClient: a tool's HTTP view of a registry server.

For a tool written in Python to live in the registry::

    async with RegistryClient("http://127.0.0.1:8080", token) as rc:
        await rc.register(ModelToolRegistrationCreate(...))   # idempotent (PUT)
        rc.start_heartbeats("my-tool", every=10)              # background, with jitter
        ...

The heartbeat loop never raises into its host: failures are logged and
retried with a growing, capped backoff, so a registry restart costs a few
missed beats, not the tool. If the registry lost the tool (a 404 on
heartbeat), the loop registers it again. Errors of explicit calls are the
package's typed errors, mapped from the server's problem+json.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import httpx
import orjson

from omninode_bridge.errors import (
    NoRoutableToolError,
    OmniNodeBridgeError,
    RegistryUnavailableError,
    ToolNotFoundError,
)
from omninode_bridge.models import (
    ChangeEvent,
    ModelToolRegistration,
    ModelToolRegistrationCreate,
    ModelToolRegistrationPage,
)
from omninode_bridge.problem_types import error_from_problem
from omninode_bridge.tasks import cancel_and_wait

__all__ = ["RegistryClient"]

logger = logging.getLogger(__name__)


def _raise_for_problem(response: httpx.Response) -> None:
    """Raise the error the registry answered, rebuilt from its problem document
    (:mod:`omninode_bridge.problem_types`, the table the server answers from)."""
    if response.status_code < 400:
        return
    try:
        problem: dict[str, Any] = response.json()
    except ValueError:
        problem = {"detail": response.text[:200] or response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:200]}
    raise error_from_problem(response.status_code, problem)


class RegistryClient:
    """Register, heartbeat, read and watch a registry over HTTP.

    ``timeout`` bounds every request (the SSE stream only between events).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        deregister_on_exit: bool = False,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http_client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout
        )
        self._owns_http = http_client is None
        self.deregister_on_exit = deregister_on_exit
        self._registered: dict[str, ModelToolRegistrationCreate] = {}
        self._heartbeats: dict[str, asyncio.Task[None]] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop heartbeats, deregister if asked to (best effort), close the connection pool."""
        await cancel_and_wait(*self._heartbeats.values())
        self._heartbeats.clear()
        if self.deregister_on_exit:
            for tool_id in list(self._registered):
                try:
                    await self.deregister(tool_id)
                except (OmniNodeBridgeError, httpx.HTTPError) as exc:
                    logger.warning("could not deregister %s on exit: %s", tool_id, exc)
        if self._owns_http:
            await self._http.aclose()

    async def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kw)
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"registry at {self._http.base_url} unreachable: {exc!r}"
            ) from exc
        _raise_for_problem(response)
        return response

    async def register(
        self, registration: ModelToolRegistrationCreate
    ) -> tuple[ModelToolRegistration, bool]:
        """Create or replace (PUT); ``True`` when it was created."""
        response = await self._request(
            "PUT",
            f"/v1/tools/{registration.tool_id}",
            content=registration.model_dump_json(),
            headers={"content-type": "application/json"},
        )
        self._registered[registration.tool_id] = registration
        return ModelToolRegistration.model_validate(response.json()), response.status_code == 201

    async def heartbeat(self, tool_id: str) -> None:
        """One heartbeat; ToolNotFoundError when the registry does not know the tool."""
        await self._request("POST", f"/v1/tools/{tool_id}/heartbeat")

    async def deregister(self, tool_id: str) -> bool:
        """Delete the tool; ``False`` when it was already gone."""
        self._registered.pop(tool_id, None)
        try:
            await self._request("DELETE", f"/v1/tools/{tool_id}")
        except ToolNotFoundError:
            return False
        return True

    async def get(self, tool_id: str) -> ModelToolRegistration | None:
        """The tool's registration, or ``None`` when it is not registered."""
        try:
            response = await self._request("GET", f"/v1/tools/{tool_id}")
        except ToolNotFoundError:
            return None
        return ModelToolRegistration.model_validate(response.json())

    async def search(self, **filters: Any) -> ModelToolRegistrationPage:
        """``POST /v1/tools/search`` with these filters (capabilities, node_type, where, ...)."""
        response = await self._request("POST", "/v1/tools/search", json=filters)
        return ModelToolRegistrationPage.model_validate(response.json())

    async def discover(
        self, operation: str, *, required: bool = False
    ) -> ModelToolRegistration | None:
        """The tool the registry would route ``operation`` to, or ``None``.

        With ``required``, no tool raises NoRoutableToolError instead, whose
        ``explanation`` says how many tools declare the operation and why the
        first few are not routable (the registry's own account).
        """
        try:
            response = await self._request("GET", f"/v1/discover/{operation}")
        except NoRoutableToolError:
            if required:
                raise
            return None
        return ModelToolRegistration.model_validate(response.json())

    def start_heartbeats(
        self, tool_id: str, every: float = 10.0, *, max_backoff: float = 30.0
    ) -> None:
        """Heartbeat ``tool_id`` every ``every`` seconds (±10 % jitter) until ``aclose()``."""
        if tool_id in self._heartbeats:
            return
        self._heartbeats[tool_id] = asyncio.create_task(
            self._beat(tool_id, every, max_backoff), name=f"heartbeat {tool_id}"
        )

    async def _beat(self, tool_id: str, every: float, max_backoff: float) -> None:
        failures = 0
        while True:
            delay = every * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not security
            try:
                try:
                    await self.heartbeat(tool_id)
                except ToolNotFoundError:
                    registration = self._registered.get(tool_id)
                    if registration is None:
                        raise
                    logger.warning("registry lost %s; registering it again", tool_id)
                    await self.register(registration)
                if failures:
                    logger.info("heartbeats for %s resumed after %d failures", tool_id, failures)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must never crash its host: log, back off, retry
                failures += 1
                delay = min(max_backoff, every * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)  # noqa: S311
                logger.warning(
                    "heartbeat for %s failed (%s); retrying in %.1fs", tool_id, exc, delay
                )
            await asyncio.sleep(delay)

    async def watch(
        self, since: str | None = None, *, reconnect_delay: float = 1.0
    ) -> AsyncIterator[ChangeEvent]:
        """The change feed over SSE, resuming with ``Last-Event-ID`` after any disconnect.

        Starts after ``since`` (a cursor; ``None``: new events only). A 410
        (cursor pruned) raises ResyncRequiredError; other failures reconnect.
        """
        cursor = since
        while True:
            headers = {"Last-Event-ID": cursor} if cursor else {}
            try:
                async with self._http.stream(
                    "GET", "/v1/changes", headers=headers, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for_problem(response)
                    data: list[str] = []
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            data.append(line[6:])
                        elif line == "" and data:
                            payload = orjson.loads("\n".join(data))
                            data = []
                            if "cursor" in payload:
                                event = ChangeEvent.model_validate(payload)
                                cursor = event.cursor
                                yield event
            except (httpx.TransportError, RegistryUnavailableError) as exc:
                logger.warning("change feed stream lost (%s); resuming from %s", exc, cursor)
            await asyncio.sleep(reconnect_delay)
