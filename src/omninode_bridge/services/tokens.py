"""API tokens: created with a random secret shown once, stored only as a hash.

A secret is ``trg_`` followed by 43 URL-safe characters (256 random bits).
The database keeps its SHA-256 (a fast hash is right for a secret of full
entropy: there is nothing to brute-force); lookups go by that hash and the
match is confirmed with a constant-time compare. Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from omninode_bridge.errors import AuthenticationError, ValidationFailedError
from omninode_bridge.models.timestamps import to_utc
from omninode_bridge.services.postgres_client import PostgresClient
from omninode_bridge.services.sql import load_queries

__all__ = ["CreatedToken", "Principal", "Scope", "TokenInfo", "TokenService", "hash_secret"]

Q = load_queries("tokens.sql")
SECRET_PREFIX = "trg_"  # noqa: S105 - a marker, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")


class Scope(StrEnum):
    """What a token may do: ``read`` < ``write`` < ``admin``."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"read": 0, "write": 1, "admin": 2}[self.value]

    def allows(self, needed: Scope) -> bool:
        """True when this scope includes ``needed``."""
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid token."""

    token_id: UUID
    name: str
    scope: Scope

    @property
    def owner(self) -> str:
        """The owner string recorded for tools this token registers."""
        return f"token:{self.token_id}"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret."""

    id: UUID
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """A new token and its secret, which exists nowhere else: show it once."""

    info: TokenInfo
    secret: str


def _principal(row: asyncpg.Record) -> Principal:
    """The principal of a token row (its ``id``, ``name`` and ``scope``)."""
    return Principal(token_id=row["id"], name=row["name"], scope=Scope(row["scope"]))


def hash_secret(secret: str) -> bytes:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _info(row: asyncpg.Record) -> TokenInfo:
    last = row["last_used_at"]
    return TokenInfo(
        id=row["id"],
        name=row["name"],
        scope=Scope(row["scope"]),
        created_at=to_utc(row["created_at"]),
        last_used_at=to_utc(last) if last is not None else None,
    )


class TokenService:
    """Create, list, revoke and check API tokens.

    ``cache_seconds`` > 0 keeps each token that :meth:`authenticate` accepted
    for that long (by its hash, never the secret), so that a busy client costs
    one statement a period rather than one a request. Revoking or rotating
    through this service empties the cache at once; a token revoked by another
    process (another replica, the CLI) is refused within ``cache_seconds``.
    Refused tokens are never cached. At most ``cache_entries`` are kept.
    """

    def __init__(
        self,
        postgres_client: PostgresClient,
        cache_seconds: float = 0.0,
        cache_entries: int = 10_000,
    ) -> None:
        self.client = postgres_client
        self.cache_seconds = cache_seconds
        self.cache_entries = cache_entries
        self._accepted: dict[bytes, tuple[Principal, float]] = {}  # hash -> (who, until)
        # Counts revocations seen here: a check that read the token before one of them
        # finished must not put it in the cache after the cache was emptied.
        self._revocations = 0

    async def create(self, name: str, scope: Scope | str) -> CreatedToken:
        """A new token named ``name``; ValidationFailedError if the name is taken or malformed."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationFailedError(
                [
                    (
                        "name",
                        "must be 1-100 letters, digits or . _ : @ - (first a letter or digit)",
                    )
                ]
            )
        level = self._scope(scope)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        row = await self.client.fetchrow(Q["create_token"], name, level.value, hash_secret(secret))
        if row is None:
            raise ValidationFailedError(
                [
                    (
                        "name",
                        f"a token named {name!r} already exists (--rotate it, or pick another)",
                    )
                ]
            )
        return CreatedToken(info=_info(row), secret=secret)

    async def rotate(self, name: str, scope: Scope | str | None = None) -> tuple[CreatedToken, int]:
        """A new secret for the active token ``name``; the old secret stops working at once.

        Keeps the name and (unless ``scope`` is given) the scope, and hands
        every tool the old token owned to the new one, all in one statement.
        Returns the new token and how many tools moved. ValidationFailedError
        (naming ``name``) when there is no such active token.
        """
        level = self._scope(scope) if scope is not None else None
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        row = await self.client.fetchrow(
            Q["rotate_token"], name, level.value if level else None, hash_secret(secret)
        )
        self._forget_all()  # the old secret: refused from now on
        if row is None:
            raise ValidationFailedError([("name", f"no active token named {name!r} to rotate")])
        return CreatedToken(info=_info(row), secret=secret), int(row["tools_moved"])

    @staticmethod
    def _scope(scope: Scope | str) -> Scope:
        try:
            return Scope(scope)
        except ValueError:
            raise ValidationFailedError([("scope", "must be read, write or admin")]) from None

    def forget(self, secret: str) -> None:
        """Check ``secret`` in the database again the next time it is used."""
        self._revocations += 1
        self._accepted.pop(hash_secret(secret), None)

    async def list(self) -> list[TokenInfo]:
        """Active tokens, by name."""
        return [_info(row) for row in await self.client.fetch(Q["list_tokens"])]

    async def revoke(self, name: str) -> bool:
        """Revoke the active token ``name``; ``False`` when there is none."""
        revoked = await self.client.fetchrow(Q["revoke_token"], name) is not None
        self._forget_all()
        return revoked

    def _forget_all(self) -> None:
        self._revocations += 1
        self._accepted.clear()

    async def is_active(self, token_id: UUID) -> bool:
        """True while the token exists and is not revoked (long-lived streams re-check this).

        A token found revoked is dropped from the cache of accepted tokens too.
        """
        active = bool(await self.client.fetchval(Q["token_active"], token_id))
        if not active:
            self._revocations += 1
            for digest, (principal, _) in list(self._accepted.items()):
                if principal.token_id == token_id:
                    del self._accepted[digest]
        return active

    async def heartbeat(self, secret: str, tool_id: str) -> Principal | None:
        """Heartbeat ``tool_id`` in one statement if ``secret`` is a valid token that may;
        the token's principal when it did (the access log names it).

        ``None`` says nothing about why: the caller takes the slow path for the error.
        """
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            return None
        row = await self.client.fetchrow(Q["heartbeat_with_token"], hash_secret(secret), tool_id)
        return None if row is None else _principal(row)

    async def heartbeats(self, requests: Sequence[tuple[str, str]]) -> Sequence[Principal | None]:
        """:meth:`heartbeat` for many ``(secret, tool_id)`` requests in one statement.

        Each request is judged alone (its own token, its own tool: one that may
        not write leaves the others written); the answer for request i is
        ``result[i]``, ``None`` saying nothing about why, as for
        :meth:`heartbeat`. Duplicates each get their answer.
        """
        hashes: list[bytes] = []
        tool_ids: list[str] = []
        positions: list[int] = []
        for i, (secret, tool_id) in enumerate(requests):
            if secret.startswith(SECRET_PREFIX) and len(secret) <= 200:
                hashes.append(hash_secret(secret))
                tool_ids.append(tool_id)
                positions.append(i)
        written: list[Principal | None] = [None] * len(requests)
        if positions:
            for row in await self.client.fetch(Q["heartbeat_with_tokens"], hashes, tool_ids):
                written[positions[row["pos"] - 1]] = _principal(row)
        return written

    async def authenticate(self, secret: str | None) -> Principal:
        """The principal behind ``secret``.

        Raises AuthenticationError when it is missing, unknown or revoked.
        """
        if not secret:
            raise AuthenticationError("a bearer token is required (Authorization: Bearer <token>)")
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            raise AuthenticationError("the bearer token is not valid")
        digest = hash_secret(secret)
        cached = self._accepted.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        revocations = self._revocations
        row = await self.client.fetchrow(Q["authenticate"], digest)
        if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), digest):
            raise AuthenticationError("the bearer token is not valid")
        principal = _principal(row)
        if self.cache_seconds > 0 and revocations == self._revocations:
            if len(self._accepted) >= self.cache_entries:
                self._accepted.clear()
            self._accepted[digest] = (principal, time.monotonic() + self.cache_seconds)
        return principal
