"""PostgresClient against a real PostgreSQL: pool, codecs, metrics, typed errors."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from omninode_bridge.errors import (
    ConfigurationError,
    DatabaseError,
    NotConnectedError,
    RegistryUnavailableError,
)
from omninode_bridge.services import PostgresClient
from omninode_bridge.settings import Settings, dsn_hosts
from tests.support import free_port


async def test_jsonb_round_trips_through_the_codec(postgres_client: PostgresClient) -> None:
    value = {"operations": ["stamp", "hash"], "nested": {"n": 1.5, "ok": True, "none": None}}
    assert await postgres_client.fetchval("SELECT $1::jsonb", value) == value
    assert await postgres_client.fetchval("SELECT $1::jsonb -> 'nested' ->> 'n'", value) == "1.5"


async def test_pool_is_reachable_with_statement_cache(postgres_client: PostgresClient) -> None:
    async with postgres_client.pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    assert postgres_client.settings.statement_cache_size > 0


async def test_pool_metrics_move_when_connections_are_held(postgres_client: PostgresClient) -> None:
    before = await postgres_client.get_pool_metrics()
    assert before.in_use == 0
    assert before.max_size == 10
    async with AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(postgres_client.acquire())
        held = await postgres_client.get_pool_metrics()
        assert held.in_use == 3
        assert held.size >= 3
        assert held.utilization_percent == pytest.approx(30.0)
    after = await postgres_client.get_pool_metrics()
    assert after.in_use == 0
    assert after.idle == after.size


async def test_health_check_reports_version_and_latency(postgres_client: PostgresClient) -> None:
    report = await postgres_client.health_check()
    assert report["status"] == "healthy"
    assert int(report["server_version"].split(".")[0]) >= 14
    assert report["latency_ms"] >= 0


async def test_health_check_before_connect_does_not_raise(test_settings: Settings) -> None:
    client = PostgresClient(test_settings, dsn="postgresql://postgres@127.0.0.1:1/none")
    report = await client.health_check()
    assert report["status"] == "unhealthy"
    assert "not connected" in report["error"]


async def test_unreachable_server_is_a_typed_error_naming_it(test_settings: Settings) -> None:
    client = PostgresClient(test_settings, dsn="postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(RegistryUnavailableError, match=r"127\.0\.0\.1:1/nowhere") as info:
        await client.connect()
    assert info.value.__cause__ is not None
    assert not client.is_connected


async def test_missing_database_is_a_configuration_error(
    db_dsn: str, test_settings: Settings
) -> None:
    dsn = db_dsn.rsplit("/", 1)[0] + "/no_such_database_here"
    if "?" in db_dsn:  # embedded: socket parameters follow the database name
        base, query = db_dsn.split("?", 1)
        dsn = base.rsplit("/", 1)[0] + "/no_such_database_here?" + query
    client = PostgresClient(test_settings, dsn=dsn)
    with pytest.raises(ConfigurationError, match="no_such_database_here"):
        await client.connect()


async def test_use_before_connect_is_explicit(test_settings: Settings) -> None:
    client = PostgresClient(test_settings, dsn="postgresql://postgres@127.0.0.1:1/x")
    with pytest.raises(NotConnectedError):
        await client.fetchval("SELECT 1")


async def test_sql_errors_are_translated_with_cause(postgres_client: PostgresClient) -> None:
    with pytest.raises(DatabaseError) as info:
        await postgres_client.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)


async def test_lost_connection_is_unavailable_then_pool_recovers(
    postgres_client: PostgresClient, db_dsn: str
) -> None:
    async with postgres_client.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    killer = await asyncpg.connect(db_dsn)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    await asyncio.sleep(0.1)
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(await postgres_client.fetchval("SELECT 42"))
        except RegistryUnavailableError:
            outcomes.append("unavailable")
    # The killed connection fails at most once, typed; then the pool reconnects.
    assert outcomes[-1] == 42
    assert all(o in (42, "unavailable") for o in outcomes)


async def test_close_is_idempotent_and_async_with_works(
    db_dsn: str, test_settings: Settings
) -> None:
    async with PostgresClient(test_settings, dsn=db_dsn) as client:
        assert await client.fetchval("SELECT 1") == 1
    assert not client.is_connected
    await client.close()


def _with_a_dead_host_first(dsn: str) -> str:
    """``dsn`` as a multi-host URL (libpq's host= list) whose first host is down."""
    ((host, port),) = dsn_hosts(dsn)
    port = port or 5432
    dead = (
        ("/nonexistent-toolreg-socket-dir", port)
        if host.startswith("/")
        else ("127.0.0.1", free_port())
    )
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
    query += [
        ("host", f"{dead[0]},{host}"),
        ("port", f"{dead[1]},{port}"),
        ("target_session_attrs", "read-write"),
    ]
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@", query=urlencode(query, safe="/,")))


async def test_multi_host_url_connects_to_the_host_that_answers(
    db_dsn: str, test_settings: Settings
) -> None:
    # As with a Patroni cluster: hosts are tried in order, the one that takes writes wins.
    dsn = _with_a_dead_host_first(db_dsn)
    async with PostgresClient(test_settings, dsn=dsn) as client:
        assert await client.fetchval("SELECT NOT pg_is_in_recovery()") is True
        # Both hosts named (a TCP host:port, or a Unix socket's path), and no password.
        hosts = client.where.split(" (database ")[0].split(",")
        assert len(hosts) == 2 and hosts[0].startswith(("/nonexistent-toolreg", "127.0.0.1:"))
        assert "@" not in client.where
        assert (await client.health_check())["status"] == "healthy"


async def test_session_state_is_reset_when_the_block_asks(
    db_dsn: str, test_settings: Settings
) -> None:
    # One connection, so every block gets the one the previous block left.
    one = test_settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})
    async with PostgresClient(one, dsn=db_dsn) as client:
        async with client.acquire(reset=True) as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SET application_name = 'left behind'")
            await conn.execute("LISTEN toolreg_test_channel")
        async with client.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the same one
            assert await conn.fetchval("SHOW application_name") == "omninode-bridge"
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_transaction_local_settings_end_with_the_transaction(
    postgres_client: PostgresClient,
) -> None:
    # Pooled connections skip asyncpg's reset query: settings must be transaction-local.
    default = await postgres_client.fetchval("SHOW statement_timeout")
    async with postgres_client.transaction() as conn:
        await conn.fetchval("SELECT set_config('statement_timeout', '1234ms', true)")
        assert await conn.fetchval("SHOW statement_timeout") == "1234ms"
    for _ in range(postgres_client.settings.pool_max_size):
        assert await postgres_client.fetchval("SHOW statement_timeout") == default
