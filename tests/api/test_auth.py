"""The authorization table over HTTP: no token, wrong token, read token, another owner, admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService
from tests.support import (
    Server,
    assert_problem,
    base_settings,
    bearer,
    start_server,
    stop_server,
    tool_body,
)

Write = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[httpx.Response]]

WRITES: dict[str, Write] = {
    "patch": lambda c, t, h: c.patch(f"/v1/tools/{t}", json={"metadata": {"x": 1}}, headers=h),
    "put": lambda c, t, h: c.put(f"/v1/tools/{t}", json=tool_body(t), headers=h),
    "heartbeat": lambda c, t, h: c.post(f"/v1/tools/{t}/heartbeat", headers=h),
    "batch-heartbeat": lambda c, t, h: c.post("/v1/heartbeats", json={"tool_ids": [t]}, headers=h),
    "delete": lambda c, t, h: c.delete(f"/v1/tools/{t}", headers=h),
}
OK = {"patch": 200, "put": 200, "heartbeat": 204, "batch-heartbeat": 200, "delete": 204}


@pytest.fixture
async def owned(http: httpx.AsyncClient, server: Server, uid: str) -> tuple[str, dict[str, str]]:
    owner = bearer(await server.token("write"))
    tool_id = f"owned-{uid}"
    assert (await http.post("/v1/tools", json=tool_body(tool_id), headers=owner)).status_code == 201
    return tool_id, owner


@pytest.mark.parametrize("action", list(WRITES))
async def test_no_token_is_401(
    http: httpx.AsyncClient, owned: tuple[str, Any], action: str
) -> None:
    response = await WRITES[action](http, owned[0], {})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("action", list(WRITES))
async def test_unknown_token_is_401(
    http: httpx.AsyncClient, owned: tuple[str, Any], action: str
) -> None:
    assert_problem(await WRITES[action](http, owned[0], bearer("trg_" + "x" * 43)), 401)
    assert_problem(await WRITES[action](http, owned[0], {"Authorization": "Basic abc"}), 401)


@pytest.mark.parametrize("action", list(WRITES))
async def test_read_token_writing_is_403(
    http: httpx.AsyncClient, server: Server, owned: tuple[str, Any], action: str
) -> None:
    reader = bearer(await server.token("read"))
    assert_problem(await WRITES[action](http, owned[0], reader), 403)


@pytest.mark.parametrize("action", list(WRITES))
async def test_another_owner_is_403(
    http: httpx.AsyncClient, server: Server, owned: tuple[str, Any], action: str
) -> None:
    intruder = bearer(await server.token("write"))
    assert_problem(await WRITES[action](http, owned[0], intruder), 403)
    still = await http.get(f"/v1/tools/{owned[0]}")
    assert still.status_code == 200
    assert still.json()["metadata"] == {"version": "1.0.0"}


@pytest.mark.parametrize("action", list(WRITES))
async def test_owner_may(http: httpx.AsyncClient, owned: tuple[str, Any], action: str) -> None:
    assert (await WRITES[action](http, owned[0], owned[1])).status_code == OK[action]


@pytest.mark.parametrize("action", list(WRITES))
async def test_admin_may_do_anything(
    http: httpx.AsyncClient, server: Server, owned: tuple[str, Any], action: str
) -> None:
    admin = bearer(await server.token("admin"))
    assert (await WRITES[action](http, owned[0], admin)).status_code == OK[action]


async def test_create_needs_write(http: httpx.AsyncClient, server: Server, uid: str) -> None:
    assert_problem(await http.post("/v1/tools", json=tool_body(f"c-{uid}")), 401)
    reader = bearer(await server.token("read"))
    assert_problem(await http.post("/v1/tools", json=tool_body(f"c-{uid}"), headers=reader), 403)


async def test_revoked_token_is_401(http: httpx.AsyncClient, server: Server, uid: str) -> None:
    secret = await server.token("write", name=f"gone-{uid}")
    assert (
        await http.post("/v1/tools", json=tool_body(f"r-{uid}"), headers=bearer(secret))
    ).status_code == 201
    async with PostgresClient(base_settings(pool_max_size=1), dsn=server.dsn) as client:
        assert await TokenService(client).revoke(f"gone-{uid}")
    assert_problem(await http.post(f"/v1/tools/r-{uid}/heartbeat", headers=bearer(secret)), 401)


async def test_revoked_here_refused_at_once_elsewhere_within_the_cache_period(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    """The server trusts a checked token for TOOLREG_TOKEN_CACHE_SECONDS (default 1 s)."""
    admin = bearer(await server.token("admin"))
    here = bearer(await server.token("write", name=f"here-{uid}"))
    assert (await http.get("/v1/tokens/me", headers=here)).status_code == 200  # now cached
    assert (await http.delete(f"/v1/tokens/here-{uid}", headers=admin)).status_code == 204
    assert_problem(await http.get("/v1/tokens/me", headers=here), 401)

    elsewhere = bearer(await server.token("write", name=f"else-{uid}"))
    assert (await http.get("/v1/tokens/me", headers=elsewhere)).status_code == 200
    async with PostgresClient(base_settings(pool_max_size=1), dsn=server.dsn) as client:
        assert await TokenService(client).revoke(f"else-{uid}")  # as another replica would
    started = time.monotonic()
    while (await http.get("/v1/tokens/me", headers=elsewhere)).status_code == 200:
        assert time.monotonic() - started < 1.0 + 3.0, "still accepted long after the period"
        await asyncio.sleep(0.05)
    assert_problem(await http.get("/v1/tokens/me", headers=elsewhere), 401)


async def test_reads_can_require_a_token(module_db: str) -> None:
    server = start_server(module_db, env={"TOOLREG_READS_REQUIRE_TOKEN": "true"})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert_problem(await http.get("/v1/tools"), 401)
            assert_problem(await http.post("/v1/tools/search", json={}), 401)
            reader = bearer(await server.token("read"))
            assert (await http.get("/v1/tools", headers=reader)).status_code == 200
            assert (await http.get("/health")).status_code == 200
    finally:
        assert stop_server(server) in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown


async def test_secrets_are_stored_hashed(server: Server) -> None:
    secret = await server.token("write")
    async with PostgresClient(base_settings(pool_max_size=1), dsn=server.dsn) as client:
        rows = await client.fetch("SELECT * FROM registry_tokens")
    dumped = repr([dict(r) for r in rows])
    assert secret not in dumped
    assert secret[4:] not in dumped
