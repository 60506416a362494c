"""What middleware that reports on every HTTP request shares: the status and the duration."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CLIENT_LEFT", "CLIENT_LEFT_KEY", "answer_then_report"]

# nginx's "client closed request": the app gave up a request whose client had gone before
# the answer, and said so by setting CLIENT_LEFT_KEY in the scope.
CLIENT_LEFT = 499
CLIENT_LEFT_KEY = "toolreg.client_left"


async def answer_then_report(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    report: Callable[[Scope, int, float], None],
) -> None:
    """Run ``app`` on the request, then ``report(scope, status, seconds)``, even when it fails.

    ``seconds`` runs until the app returns (a stream: until it ends); ``status`` is
    500 when the app failed before it answered, what the client gets then, and
    ``CLIENT_LEFT`` when it gave up because the client had gone.
    """
    started = time.perf_counter()
    status = 500

    async def record_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    try:
        await app(scope, receive, record_status)
    finally:
        if status == 500 and scope.get(CLIENT_LEFT_KEY):
            status = CLIENT_LEFT
        report(scope, status, time.perf_counter() - started)
