"""``/v1/tokens``: list, create and revoke API tokens over HTTP (admin only), and ``/me``.

The same operations as ``toolreg token``: a secret is returned once, by the
create call, and exists nowhere else (the database keeps its hash); listings
never carry secrets.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from omninode_bridge.api import examples
from omninode_bridge.api.auth import Reader, principal_of
from omninode_bridge.api.routes.common import State, problems
from omninode_bridge.errors import AuthenticationError, PermissionDeniedError
from omninode_bridge.models.timestamps import UtcTimestamp
from omninode_bridge.services.tokens import Principal, Scope, TokenInfo

__all__ = ["CreatedTokenOut", "TokenCreate", "TokenOut", "Whoami", "router"]

router = APIRouter(prefix="/v1", tags=["tokens"])

TokenName = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]


_NAME = "Unique; 1-100 letters, digits or . _ : @ - (starting with a letter or digit)."
_SCOPE = "What it may do: read < write (register, heartbeat its own tools) < admin."


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    id: UUID = Field(description="The token's id.")
    name: str = Field(description=_NAME)
    scope: Scope = Field(description=_SCOPE)
    created_at: UtcTimestamp = Field(description="When it was created (UTC).")
    last_used_at: UtcTimestamp | None = Field(
        default=None, description="Recorded at most once a minute per token."
    )

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            id=info.id,
            name=info.name,
            scope=info.scope,
            created_at=info.created_at,
            last_used_at=info.last_used_at,
        )


class CreatedTokenOut(TokenOut):
    """A new token with its secret: shown this once, stored nowhere."""

    secret: str = Field(description="The bearer token itself: shown this once, stored nowhere.")


class TokenCreate(BaseModel):
    """``POST /v1/tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        description=_NAME + " Default: token-XXXXXXXX (random).",
    )
    scope: Scope = Field(default=Scope.WRITE, description=_SCOPE)


class Whoami(BaseModel):
    """The token a request carries."""

    id: UUID = Field(description="The token's id.")
    name: str = Field(description=_NAME)
    scope: Scope = Field(description=_SCOPE)


async def _require_admin(
    principal: Annotated[Principal | None, Depends(principal_of)],
) -> Principal:
    if principal is None:
        raise AuthenticationError("managing tokens needs an admin token (Authorization: Bearer)")
    if principal.scope is not Scope.ADMIN:
        raise PermissionDeniedError(
            f"token {principal.name!r} has scope {principal.scope.value}; "
            "managing tokens needs admin"
        )
    return principal


Admin = Annotated[Principal, Depends(_require_admin)]


@router.get("/tokens/me", responses={**examples.answer(examples.WHOAMI), **problems(401)})
async def whoami(principal: Reader) -> Whoami:
    """The name and scope of the bearer token sent (401 without one)."""
    if principal is None:
        raise AuthenticationError("send a bearer token to see whose it is")
    return Whoami(id=principal.token_id, name=principal.name, scope=principal.scope)


@router.get("/tokens", responses={**examples.answer(examples.TOKENS), **problems(401, 403)})
async def list_tokens(_: Admin, state: State) -> list[TokenOut]:
    """Active tokens by name, never their secrets (admin only)."""
    return [TokenOut.of(info) for info in await state.tokens.list()]


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    responses={
        **examples.answer(examples.CREATED_TOKEN, 201),
        **problems(400, 401, 403, 413, 422),
    },
)
async def create_token(
    body: Annotated[
        TokenCreate,
        Body(openapi_examples=examples.body("A team's token", examples.TOKEN_CREATE)),
    ],
    _: Admin,
    state: State,
) -> CreatedTokenOut:
    """Create a token (admin only). The answer holds its secret, this once."""
    created = await state.tokens.create(body.name or f"token-{secrets.token_hex(4)}", body.scope)
    return CreatedTokenOut(**TokenOut.of(created.info).model_dump(), secret=created.secret)


@router.delete(
    "/tokens/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404, 422)
)
async def revoke_token(name: TokenName, _: Admin, state: State) -> Response:
    """Revoke the active token ``name`` (admin only): it stops working at once on this
    server and within ``TOOLREG_TOKEN_CACHE_SECONDS`` on other replicas; streams opened
    with it end within ``TOOLREG_STREAM_TOKEN_RECHECK_SECONDS``."""
    if not await state.tokens.revoke(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active token named {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
