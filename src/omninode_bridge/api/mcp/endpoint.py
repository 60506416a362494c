"""``/mcp``: the registry's checks in front of the SDK's streamable HTTP transport.

- **Stateless**: every request is a POST answered on its own (JSON, or SSE for
  ``subscriptions/listen``). There is no session to resume or delete and no
  standalone GET stream, so GET and DELETE are 405 (``Allow: POST``), as the
  transport specification asks of a server that offers neither.
- **Tokens**: the same rules as every other read (``TOOLREG_READS_REQUIRE_TOKEN``;
  a token that is sent must be valid), answered as problem+json 401. The
  caller's principal rides the ASGI scope (``PRINCIPAL_KEY``) to the tools,
  which may ask for more (``call_tool`` needs a write or admin token).
- **Clients that leave**: a request whose client hangs up before the answer is
  cancelled (a ``call_tool`` stops waiting on its tool, which ``timeout_seconds``
  lets last an hour) and logged and counted with status 499.
- **Listen streams** (``subscriptions/listen``, recognised by the ``Mcp-Method``
  header that the 2026-07-28 wire requires and the SDK checks against the
  body) start the change notifier first, and end when the server begins
  shutting down, within ``TOOLREG_STREAM_TOKEN_RECHECK_SECONDS`` of their
  token's revocation, or when their client has read nothing for
  ``STALLED_WRITE_SECONDS``; the client re-listens (elsewhere) and re-reads.
  One client (a token's name, else its address) holds at most
  ``TOOLREG_MCP_LISTENS_PER_CLIENT`` of them at once: the SDK allows 1024 per
  server in all, which one client could otherwise take from everyone. Over the
  bound a listen is 429 with ``Retry-After`` before it reaches the SDK; a slot
  is freed however its stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omninode_bridge.api.auth import PRINCIPAL_KEY, reader_of, until_revoked
from omninode_bridge.api.mcp.notifier import ChangeNotifier
from omninode_bridge.api.reporting import CLIENT_LEFT_KEY
from omninode_bridge.api.state import AppState
from omninode_bridge.errors import TooManyStreamsError
from omninode_bridge.services.tokens import Principal

__all__ = ["PRINCIPAL_KEY", "McpEndpoint", "principal_in"]

logger = logging.getLogger(__name__)

LISTEN_METHOD = "subscriptions/listen"
STALLED_WRITE_SECONDS = 10.0
FINAL_WRITE_SECONDS = 1.0  # ending a stream cut short must not hold up a shutdown
LISTENS_SETTING = "TOOLREG_MCP_LISTENS_PER_CLIENT"


class _StalledError(Exception):
    """A listen stream's client stopped reading."""


class _ListenSlots:
    """How many listen streams each client holds open on this server."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: Counter[str] = Counter()

    @staticmethod
    def client_of(scope: Scope, principal: Principal | None) -> str:
        """Who a listen counts against: the token's name, else the client's address
        (behind a proxy, the address uvicorn takes from the trusted forwarding headers)."""
        if principal is not None:
            return f"token {principal.name}"
        client = scope.get("client")
        return f"address {client[0]}" if client else "address unknown"

    @contextlib.contextmanager
    def taken(self, client: str) -> Iterator[None]:
        """One slot of ``client`` for the body; TooManyStreamsError when it has none left.
        No await between the check and the count: the event loop makes them one step."""
        if self._open[client] >= self.per_client:
            raise TooManyStreamsError(self.per_client, LISTENS_SETTING)
        self._open[client] += 1
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]


def principal_in(request: object) -> Principal | None:
    """The principal that made an MCP request (``None``: no token, or not over HTTP)."""
    if not isinstance(request, Request):
        return None
    principal = request.scope.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else None


class McpEndpoint:
    """The ASGI app routed at ``/mcp``; ``transport`` is the SDK's session manager and
    ``listens_per_client`` the bound on one client's open listen streams."""

    def __init__(
        self,
        transport: ASGIApp,
        notifier: ChangeNotifier,
        state_of: Callable[[], AppState],
        listens_per_client: int,
    ) -> None:
        self.transport = transport
        self.notifier = notifier
        self.state_of = state_of
        self.listens = _ListenSlots(listens_per_client)
        self.route: BaseRoute | None = None  # the route this is served at

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.route is not None:
            # As FastAPI does for its own routes: the metrics middleware reads the route
            # template from here instead of matching every route again.
            scope["route"] = self.route
        request = Request(scope, receive)
        if request.method != "POST":
            raise HTTPException(
                405,
                "this MCP server is stateless: POST each request (no GET stream, no session)",
                headers={"Allow": "POST"},
            )
        state = self.state_of()
        principal = await reader_of(request, state)
        scope[PRINCIPAL_KEY] = principal
        if request.headers.get("mcp-method") != LISTEN_METHOD:
            await self._answer(scope, receive, send)
            return
        with self.listens.taken(self.listens.client_of(scope, principal)):
            await self.notifier.ensure_started(state)
            await self._listen(scope, receive, send, state, principal)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request, answered; its work is cancelled if the client leaves before the
        answer (a ``call_tool`` would otherwise wait on its tool, up to its
        ``timeout_seconds``, for nobody)."""
        body_read = asyncio.Event()
        answered = False

        async def reading() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                body_read.set()
            return message

        async def sending(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
            await send(message)

        work = asyncio.ensure_future(self.transport(scope, reading, sending))
        read = asyncio.ensure_future(body_read.wait())
        gone: asyncio.Future[Message] | None = None
        try:
            await asyncio.wait({work, read}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # Once the body is read, the next message is http.disconnect.
                gone = asyncio.ensure_future(receive())
                await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done() and not answered:
                    scope[CLIENT_LEFT_KEY] = True  # logged and counted as 499, not 500
                    work.cancel()
        finally:
            for task in (read, gone):
                if task is not None:
                    task.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not work.cancelled():
            work.result()  # what it raised, as if it had been awaited

    async def _listen(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        state: AppState,
        principal: Principal | None,
    ) -> None:
        started = finished = stalled = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished, stalled
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            try:
                # A listener that stops reading would hold this task and its connection
                # for as long as the server runs: the write waits for the socket to drain.
                async with asyncio.timeout(STALLED_WRITE_SECONDS):
                    await send(message)
            except TimeoutError:
                stalled = True
                raise _StalledError from None

        stream = asyncio.ensure_future(self.transport(scope, receive, tracked))
        stopping = asyncio.ensure_future(state.stopping.wait())
        revoked = asyncio.ensure_future(until_revoked(state, principal))
        try:
            await asyncio.wait({stream, stopping, revoked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopping, revoked, stream):
                task.cancel()
            results = await asyncio.gather(stream, stopping, revoked, return_exceptions=True)
        if stalled:
            logger.warning(
                "closing a listen stream whose client read nothing for %gs", STALLED_WRITE_SECONDS
            )
            return  # the server closes the connection: the response cannot be finished
        if isinstance(results[0], Exception):
            raise results[0]
        if started and not finished:
            # Cut short: end the HTTP response properly; the client sees the stream end
            # without its final result and listens again.
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(FINAL_WRITE_SECONDS):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
