"""Bearer-token authentication and ownership checks for the API.

Reads are open unless ``TOOLREG_READS_REQUIRE_TOKEN`` is set; writes need a
``write`` token; ``admin`` may do anything. A tool registered with a write
token is owned by it: other write tokens get 403 when they change, heartbeat
or delete it. Tools without an owner (registered through the CLI or the
Python API) and tools owned by an auto-discovery source are changed only by
``admin``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omninode_bridge.api.state import AppState, get_state
from omninode_bridge.errors import (
    AuthenticationError,
    OmniNodeBridgeError,
    PermissionDeniedError,
)
from omninode_bridge.services.tokens import Principal, Scope

__all__ = [
    "PRINCIPAL_KEY",
    "Reader",
    "Writer",
    "bearer_scheme",
    "check_owner",
    "check_owners",
    "principal_of",
    "reader_of",
    "require_writer",
    "until_revoked",
]

# Where the request's principal (a Principal, or None) is left in the ASGI scope once its
# token is checked: the access log names it, the MCP tools act as it.
PRINCIPAL_KEY = "toolreg.principal"

bearer_scheme = HTTPBearer(
    auto_error=False, description="A registry token: `toolreg token create`."
)


async def principal_of(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | None:
    if credentials is None:
        if request.headers.get("authorization"):
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        return None
    principal = await state.tokens.authenticate(credentials.credentials)
    request.scope[PRINCIPAL_KEY] = principal
    return principal


async def _reader(
    state: Annotated[AppState, Depends(get_state)],
    principal: Annotated[Principal | None, Depends(principal_of)],
) -> Principal | None:
    if principal is None and state.settings.reads_require_token:
        raise AuthenticationError("this registry requires a token for reads")
    return principal


async def require_writer(
    principal: Annotated[Principal | None, Depends(principal_of)],
) -> Principal:
    if principal is None:
        raise AuthenticationError("writes need a bearer token (Authorization: Bearer <token>)")
    if not principal.scope.allows(Scope.WRITE):
        raise PermissionDeniedError(f"token {principal.name!r} has scope read; writing needs write")
    return principal


Reader = Annotated[Principal | None, Depends(_reader)]
Writer = Annotated[Principal, Depends(require_writer)]


async def reader_of(request: Request, state: AppState) -> Principal | None:
    """What :data:`Reader` gives a route, for a face served as a plain ASGI app (MCP)."""
    credentials = await bearer_scheme(request)
    return await _reader(state, await principal_of(request, state, credentials))


async def until_revoked(state: AppState, principal: Principal | None) -> None:
    """Return once ``principal``'s token is revoked (never, for ``None``): long-lived
    streams end on it. Checked every ``TOOLREG_STREAM_TOKEN_RECHECK_SECONDS``; while the
    database is away the token counts as active (the stream's own feed loss ends it)."""
    if principal is None:
        await asyncio.Event().wait()
        return
    while True:
        await asyncio.sleep(state.settings.stream_token_recheck_seconds)
        try:
            if not await state.tokens.is_active(principal.token_id):
                return
        except OmniNodeBridgeError:
            continue


def check_owner(principal: Principal, tool_id: str, owner: str | None) -> None:
    """PermissionDeniedError unless ``principal`` may change a tool owned by ``owner``."""
    if principal.scope is Scope.ADMIN or owner == principal.owner:
        return
    whose = (
        "no token (admin only)"
        if owner is None
        else ("an auto-discovery source" if owner.startswith("source:") else "another token")
    )
    raise PermissionDeniedError(
        f"tool {tool_id!r} is owned by {whose}; token {principal.name!r} may not change it"
    )


def check_owners(principal: Principal, owners: Mapping[str, str], tool_ids: Iterable[str]) -> None:
    """PermissionDeniedError naming every id in ``tool_ids`` that ``principal`` may not change."""
    if principal.scope is Scope.ADMIN:
        return
    denied = [t for t in tool_ids if owners.get(t) != principal.owner]
    if denied:
        names = ", ".join(repr(t) for t in denied[:20])
        raise PermissionDeniedError(f"token {principal.name!r} does not own {names}")
