"""The access log: one line per HTTP request, at info, on the ``omninode_bridge.access`` logger.

Each line names the method, the path, the status, the duration in milliseconds,
the client, and the name of the token the request authenticated with (``-``
without one, or when it did not authenticate): never the token itself. The
name is what :func:`omninode_bridge.api.auth.principal_of` left in the scope.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from omninode_bridge.api.auth import PRINCIPAL_KEY
from omninode_bridge.api.reporting import answer_then_report
from omninode_bridge.logs import ACCESS_LOGGER
from omninode_bridge.services.tokens import Principal

__all__ = ["AccessLogMiddleware"]

logger = logging.getLogger(ACCESS_LOGGER)


def _path(scope: Scope) -> str:
    # As sent (percent-encoded): a decoded path could hold a newline and forge a log line.
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.decode("ascii", "backslashreplace")
    return str(scope.get("path", "-"))


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _log(scope: Scope, status: int, seconds: float) -> None:
    principal = scope.get(PRINCIPAL_KEY)
    fields = {
        "method": scope.get("method", "-"),
        "path": _path(scope),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "token": principal.name if isinstance(principal, Principal) else "-",
        "client": _client(scope),
    }
    logger.info(
        "%(method)s %(path)s %(status)d %(duration_ms).1f ms token=%(token)s client=%(client)s",
        fields,
        extra={"fields": fields},
    )


class AccessLogMiddleware:
    """Logs every HTTP request once it is answered (a stream: once it ends).

    Costs nothing beyond one level check when info is off (``--log-level warning``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        await answer_then_report(self.app, scope, receive, send, _log)
