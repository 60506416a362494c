"""PostgresClient: the asyncpg pool every other service runs on.

``PostgresClient()`` with no arguments reads :class:`~omninode_bridge.settings.Settings`
and, when no server is configured, starts (or reuses) the embedded PostgreSQL.
The pool keeps asyncpg's per-connection prepared-statement cache on, and every
connection gets an orjson codec for ``json``/``jsonb``, so call sites pass and
receive plain Python values. Driver errors leave this module translated
(:mod:`omninode_bridge.services.db_errors`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from omninode_bridge.embedded import start_embedded
from omninode_bridge.errors import (
    NotConnectedError,
    OmniNodeBridgeError,
    RegistryOverloadedError,
    RegistryUnavailableError,
)
from omninode_bridge.services.db_errors import DRIVER_ERRORS, translate, translating
from omninode_bridge.settings import Settings, dsn_hosts, load_settings

__all__ = ["PoolMetrics", "PostgresClient", "describe_dsn", "resolve_dsn"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    PooledConnection = PoolConnectionProxy[asyncpg.Record]


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """A snapshot of the pool: connections open, busy, idle, and the bounds."""

    size: int
    in_use: int
    idle: int
    min_size: int
    max_size: int
    utilization_percent: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` (or the socket path) for messages: never the password.

    A multi-host URL names every host: ``h1:5432,h2:5433/database``. A host that
    is a directory (``?host=/run/pg``, as the embedded server's) is a Unix-domain
    socket there: ``/run/pg/.s.PGSQL.5432 (database name)``.
    """
    parts = urlsplit(dsn)
    try:
        hosts = dsn_hosts(dsn) or [("localhost", None)]
    except ValueError:
        hosts = [("(malformed host list)", None)]
    named = ",".join(
        f"{host.rstrip('/')}/.s.PGSQL.{port or 5432}"
        if host.startswith("/")
        else (f"[{host}]:{port or 5432}" if ":" in host else f"{host}:{port or 5432}")
        for host, port in hosts
    )
    database = parts.path.lstrip("/") or parts.username or "postgres"
    if any(host.startswith("/") for host, _ in hosts):
        return f"{named} (database {database})"
    return f"{named}/{database}"


async def resolve_dsn(settings: Settings) -> str:
    """The DSN to connect to: the configured server's, or the embedded one's (started if needed)."""
    external = settings.external_dsn()
    if external is not None:
        return external
    server = await start_embedded(settings.data_dir, settings.postgres_db, settings.connect_timeout)
    return server.dsn(settings.postgres_db)


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release: a second round trip per query.
    Pooled connections here keep no session state (settings are
    transaction-local, cursors live in transactions, advisory locks are taken
    on dedicated connections); a block that does leave some asks for the full
    reset with ``acquire(reset=True)``.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Registered once per connection: JSON crosses the driver as text, encoded
    # and decoded by orjson here and nowhere else.
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


class PostgresClient:
    """An asyncpg pool with typed errors, health checks and pool metrics.

    ``dsn`` overrides the settings' choice of server (tests, tools). Use
    ``await connect()`` / ``await close()`` or ``async with``.
    """

    def __init__(self, settings: Settings | None = None, *, dsn: str | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._dsn = dsn
        # Computed once: every query names the database if it has to raise.
        self._where: str | None = describe_dsn(dsn) if dsn else None
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    @property
    def dsn(self) -> str:
        """The DSN in use; known once connected."""
        if self._dsn is None:
            raise NotConnectedError(
                "PostgresClient has no database yet: call await connect() first"
            )
        return self._dsn

    @property
    def where(self) -> str:
        """The database for messages (no password)."""
        if self._where is None:
            return "(not connected)"
        return self._where

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for advanced use; raises NotConnectedError before connect()."""
        if self._pool is None:
            raise NotConnectedError("PostgresClient is not connected: call await connect() first")
        return self._pool

    @property
    def is_connected(self) -> bool:
        return self._pool is not None

    async def connect(self) -> None:
        """Open the pool (idempotent).

        Raises RegistryUnavailableError when the server cannot be reached, and
        ConfigurationError when it rejects the credentials or the database name.
        """
        async with self._lock:
            if self._pool is not None:
                return
            if self._dsn is None:
                self._dsn = await resolve_dsn(self.settings)
                self._where = describe_dsn(self._dsn)
            s = self.settings
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=s.pool_min_size,
                    max_size=s.pool_max_size,
                    timeout=s.connect_timeout,
                    command_timeout=s.command_timeout,
                    statement_cache_size=s.statement_cache_size,
                    init=_init_connection,
                    reset=_keep_session,
                    server_settings={"application_name": "omninode-bridge"},
                )
            except OmniNodeBridgeError:
                raise
            except DRIVER_ERRORS as exc:
                raise translate(exc, self.where) from exc
            except ValueError as exc:  # asyncpg's DSN parser
                raise translate(exc, self.where) from exc

    async def close(self) -> None:
        """Close the pool, waiting up to the command timeout for connections in use."""
        async with self._lock:
            pool, self._pool = self._pool, None
            if pool is None:
                return
            try:
                await asyncio.wait_for(pool.close(), timeout=self.settings.command_timeout)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    async def __aenter__(self) -> PostgresClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def acquire(self, *, reset: bool = False) -> AsyncIterator[PooledConnection]:
        """A pooled connection; driver errors inside the block come out translated.

        ``reset=True`` when the block leaves session state behind (``LISTEN``,
        a session-level setting): the connection gets asyncpg's full reset
        before it goes back to the pool. Other blocks must not leave any.

        Waiting for a connection is bounded by ``TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS``:
        RegistryOverloadedError when every connection stayed busy that long,
        RegistryUnavailableError when a new one could not be opened. Giving the
        connection back is bounded too: asyncpg resets it on release and,
        without a timeout, a reset after a cancelled query can wait forever;
        on timeout asyncpg terminates the connection instead.
        """
        pool = self.pool
        with translating(self.where):
            conn = await self._acquire(pool)
            try:
                yield conn
            finally:
                try:
                    if reset and not conn.is_closed():
                        await conn.reset(timeout=self.settings.connect_timeout)
                except BaseException:
                    conn.terminate()  # its session state is unknown: never reuse it
                    raise
                finally:
                    await pool.release(conn, timeout=self.settings.connect_timeout)

    async def _acquire(self, pool: asyncpg.Pool) -> PooledConnection:
        limit = self.settings.pool_acquire_timeout
        try:
            return await pool.acquire(timeout=limit)
        except TimeoutError as exc:
            if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
                raise RegistryOverloadedError(
                    f"all {pool.get_max_size()} database connections stayed busy for {limit:g}s "
                    "(TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS): the registry is overloaded; "
                    "retry shortly"
                ) from exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PooledConnection]:
        """A pooled connection inside one transaction: commit on success, roll back on error."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    async def health_check(self) -> dict[str, Any]:
        """``status`` is ``"healthy"`` or ``"unhealthy"``; never raises for an unreachable database.

        Also reports ``latency_ms``, ``server_version``, ``database`` and, when
        unhealthy, ``error``.
        """
        started = time.perf_counter()
        report: dict[str, Any] = {"database": self.where}
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                async with self.acquire() as conn:
                    version = await conn.fetchval("SHOW server_version")
        except (OmniNodeBridgeError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, OmniNodeBridgeError)
                else RegistryUnavailableError(
                    f"database {self.where} did not answer within {self.settings.connect_timeout}s"
                )
            )
            report.update(
                status="unhealthy",
                error=str(error),
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                server_version=None,
            )
            return report
        report.update(
            status="healthy",
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            server_version=str(version),
        )
        return report

    async def get_pool_metrics(self) -> PoolMetrics:
        """Connections open, busy and idle now, with the pool's bounds."""
        pool = self.pool
        size = pool.get_size()
        idle = pool.get_idle_size()
        max_size = pool.get_max_size()
        in_use = size - idle
        return PoolMetrics(
            size=size,
            in_use=in_use,
            idle=idle,
            min_size=pool.get_min_size(),
            max_size=max_size,
            utilization_percent=round(100.0 * in_use / max_size, 2) if max_size else 0.0,
        )
