"""``POST /v1/tools/{tool_id}/heartbeat``'s common case, before FastAPI's request machinery.

A heartbeat is the registry's most frequent request and the cheapest to
answer: its cost was mostly FastAPI's (dependency solving, parameter
validation, exit stacks), several times the coalesced statement's. This route
sits first in the router. It answers 204 itself only when the request carries
a bearer token and a well-formed id and the coalescer wrote the heartbeat;
everything else (no token, a malformed id, coalescing off, a heartbeat the
batch did not write) goes on to the route in :mod:`.tools`, which gives every
answer it always gave, and skips the statement this route already ran.
"""

from __future__ import annotations

from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from omninode_bridge.api.auth import PRINCIPAL_KEY
from omninode_bridge.api.state import AppState
from omninode_bridge.services.tool_registration_repository import could_be_registered

__all__ = ["PATH", "TRIED", "FastHeartbeatRoute"]

PATH = "/v1/tools/{tool_id}/heartbeat"
TRIED = "toolreg.heartbeat_tried"  # in scope["state"]: the batch did not write it
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
_EMPTY = {"type": "http.response.body", "body": b""}


def _bearer(scope: Scope) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header (as HTTPBearer reads them)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, credentials = text.partition(" ")
            if scheme.lower() == "bearer" and credentials:
                return credentials
            return None
    return None


class FastHeartbeatRoute(Route):
    """The route; it stands aside for a request it already handed on."""

    def __init__(self) -> None:
        super().__init__(PATH, endpoint=_unused, methods=["POST"], include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("state", {}).get(TRIED):
            return Match.NONE, {}
        match, child = super().matches(scope)
        # A method-only match would answer 405 here; the full route answers that itself.
        return (match, child) if match is Match.FULL else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self  # the metrics' route template, as FastAPI's routes set it
        state: AppState = scope["app"].state.toolreg
        tool_id: str = scope["path_params"]["tool_id"]
        secret = _bearer(scope)
        coalescer = state.heartbeats
        principal = None
        if coalescer is not None and secret is not None and could_be_registered(tool_id):
            principal = await coalescer.submit((secret, tool_id))
        if principal is not None:
            scope[PRINCIPAL_KEY] = principal  # the access log names its token
            state.metrics.heartbeats.inc()
            await send(_NO_CONTENT)
            await send(_EMPTY)
            return
        # Anything else: the full route, by the router's own matching (this one now
        # stands aside). It skips the statement when the batch already said no, and
        # checks the token afresh on its error path.
        scope.setdefault("state", {})[TRIED] = True
        await scope["app"].router(scope, receive, send)


async def _unused(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise AssertionError("FastHeartbeatRoute.handle answers its requests")
