"""Alembic environment: async engine over asyncpg, migrations serialized by an advisory lock.

The DSN comes from ``config.attributes["dsn"]`` (set by ``toolreg db``) or else
from the settings, starting the embedded PostgreSQL when nothing is configured.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

import asyncpg
from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from omninode_bridge.migrations import MIGRATION_LOCK_KEY
from omninode_bridge.services.postgres_client import resolve_dsn
from omninode_bridge.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        # Held until this transaction ends: a second migrator waits here, then
        # reads the version table afresh and finds nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _online() -> None:
    settings = load_settings()
    dsn: str = config.attributes.get("dsn") or await resolve_dsn(settings)

    async def _connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            dsn, timeout=settings.connect_timeout, command_timeout=settings.command_timeout
        )

    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=_connect, poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _offline() -> None:
    context.configure(url="postgresql://", literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _offline()
else:
    asyncio.run(_online())
