"""Reject request bodies over a size bound before anything parses them (HTTP 413).

An oversized body is read and discarded (never stored or parsed) up to
``DRAIN_FACTOR`` times the bound before the 413 goes out, so that ordinary
clients, which send the whole body before reading the answer, see the 413
instead of a reset connection; past that the connection is simply closed.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omninode_bridge.api.problems import problem_response

__all__ = ["BodyLimitMiddleware"]

DRAIN_FACTOR = 16


class BodyLimitMiddleware:
    """Pure ASGI: checks ``Content-Length`` up front and counts streamed (chunked) bytes too.

    Past the bound while streaming, reading the body raises a 413 HTTPException,
    which FastAPI passes through its body parsing untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request bodies are limited to {self.max_bytes} bytes"

    async def _drain(self, receive: Receive, already: int) -> None:
        seen = already
        while seen <= self.max_bytes * DRAIN_FACTOR:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                if int(value) <= self.max_bytes * DRAIN_FACTOR:
                    await self._drain(receive, 0)
                response = problem_response(
                    413, "Request body too large", self._detail(), instance=scope.get("path")
                )
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await self._drain(receive, received)
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)
