"""TokenService's cache of accepted tokens, on a real database: a busy client costs one
statement a period; revoking here refuses at once, revoking elsewhere within the period."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from omninode_bridge.errors import AuthenticationError
from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService

PERIOD = 0.5


async def test_an_accepted_token_is_checked_once_a_period(postgres_client: PostgresClient) -> None:
    cached = TokenService(postgres_client, cache_seconds=60)
    secret = (await cached.create("busy", "write")).secret
    first = await cached.authenticate(secret)
    # Revoked behind the cache's back (as another replica would): still accepted here...
    await postgres_client.execute("UPDATE registry_tokens SET revoked_at = now()")
    assert await cached.authenticate(secret) == first
    # ...while a service without the cache refuses it at once.
    with pytest.raises(AuthenticationError):
        await TokenService(postgres_client).authenticate(secret)


async def test_revoked_elsewhere_is_refused_within_the_period(
    postgres_client: PostgresClient,
) -> None:
    cached = TokenService(postgres_client, cache_seconds=PERIOD)
    other = TokenService(postgres_client)
    secret = (await other.create("elsewhere", "write")).secret
    await cached.authenticate(secret)
    assert await other.revoke("elsewhere")
    await asyncio.sleep(PERIOD + 0.05)
    with pytest.raises(AuthenticationError):
        await cached.authenticate(secret)


async def test_revoking_or_rotating_here_refuses_at_once(postgres_client: PostgresClient) -> None:
    cached = TokenService(postgres_client, cache_seconds=60)
    secret = (await cached.create("here", "write")).secret
    await cached.authenticate(secret)
    assert await cached.revoke("here")
    with pytest.raises(AuthenticationError):
        await cached.authenticate(secret)

    old = (await cached.create("turning", "read")).secret
    await cached.authenticate(old)
    new, _ = await cached.rotate("turning")
    with pytest.raises(AuthenticationError):
        await cached.authenticate(old)
    assert (await cached.authenticate(new.secret)).name == "turning"


async def test_refusals_are_not_cached_and_the_cache_is_bounded(
    postgres_client: PostgresClient,
) -> None:
    cached = TokenService(postgres_client, cache_seconds=60, cache_entries=3)
    with pytest.raises(AuthenticationError):
        await cached.authenticate("trg_" + "x" * 43)
    secrets = [(await cached.create(f"t{n}", "read")).secret for n in range(5)]
    for secret in secrets:
        await cached.authenticate(secret)
        assert len(cached._accepted) <= 3


async def test_a_token_found_revoked_is_dropped_from_the_cache(
    postgres_client: PostgresClient,
) -> None:
    cached = TokenService(postgres_client, cache_seconds=60)
    secret = (await cached.create("streaming", "read")).secret
    principal = await cached.authenticate(secret)
    assert await TokenService(postgres_client).revoke("streaming")
    assert await cached.authenticate(secret) == principal  # cached: not asked yet
    assert not await cached.is_active(principal.token_id)  # a stream's periodic check
    with pytest.raises(AuthenticationError):
        await cached.authenticate(secret)


async def test_a_check_that_overlaps_a_revocation_is_not_cached(
    postgres_client: PostgresClient,
) -> None:
    """A check reads the token as active, the revocation here finishes before the check
    does: the check's answer stands, but it must not outlive the revocation in the cache."""
    cached = TokenService(postgres_client, cache_seconds=60)
    secret = (await cached.create("racing", "write")).secret
    gate = asyncio.Event()
    real_fetchrow = postgres_client.fetchrow

    async def slow_fetchrow(query: str, *args: Any) -> asyncpg.Record | None:
        row = await real_fetchrow(query, *args)
        await gate.wait()  # the row is read; the revocation happens meanwhile
        return row

    postgres_client.fetchrow = slow_fetchrow  # type: ignore[method-assign]
    checking = asyncio.create_task(cached.authenticate(secret))
    await asyncio.sleep(0.2)
    postgres_client.fetchrow = real_fetchrow  # type: ignore[method-assign]
    assert await cached.revoke("racing")
    gate.set()
    await checking
    with pytest.raises(AuthenticationError):
        await cached.authenticate(secret)
