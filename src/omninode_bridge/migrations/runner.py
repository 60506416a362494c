"""Run the packaged migrations from code (``toolreg db``, the server, the tests).

Alembic's command API is synchronous and its env runs its own event loop, so
each command runs in a worker thread. Concurrent upgrades are serialized by
the advisory lock taken in ``env.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from omninode_bridge.errors import MigrationError, OmniNodeBridgeError
from omninode_bridge.services.db_errors import translate
from omninode_bridge.services.postgres_client import describe_dsn

__all__ = [
    "Revision",
    "current_revision",
    "downgrade",
    "head_revision",
    "history",
    "upgrade",
]

SCRIPT_LOCATION = "omninode_bridge:migrations"


@dataclass(frozen=True, slots=True)
class Revision:
    """One migration: its id, the one before it, and its one-line description."""

    revision: str
    down_revision: str | None
    doc: str
    is_head: bool


def _config(dsn: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["configure_logger"] = False
    if dsn is not None:
        cfg.attributes["dsn"] = dsn
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = _scripts().get_current_head()
    if head is None:
        raise MigrationError("no migrations are packaged")
    return head


def history() -> list[Revision]:
    """Every packaged revision, newest first."""
    heads = set(_scripts().get_heads())
    return [
        Revision(
            revision=script.revision,
            down_revision=script.down_revision if isinstance(script.down_revision, str) else None,
            doc=script.doc,
            is_head=script.revision in heads,
        )
        for script in _scripts().walk_revisions()
    ]


async def _run(dsn: str, fn: str, revision: str) -> None:
    cfg = _config(dsn)
    try:
        await asyncio.to_thread(getattr(command, fn), cfg, revision)
    except CommandError as exc:
        raise MigrationError(f"{fn} to {revision!r} failed: {exc}") from exc
    except DBAPIError as exc:
        orig = exc.orig.__cause__ if exc.orig is not None and exc.orig.__cause__ else exc.orig
        raise translate(orig or exc, describe_dsn(dsn)) from exc
    except OmniNodeBridgeError:
        raise
    except (
        SQLAlchemyError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        TimeoutError,
    ) as exc:
        raise translate(exc, describe_dsn(dsn)) from exc


async def upgrade(dsn: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; safe to run from several processes at once."""
    await _run(dsn, "upgrade", revision)


async def downgrade(dsn: str, revision: str = "-1") -> None:
    """Revert migrations down to ``revision`` (``-1``: one step; ``base``: everything)."""
    await _run(dsn, "downgrade", revision)


async def current_revision(dsn: str, timeout: float = 10.0) -> str | None:
    """The revision the database is at, or ``None`` when it has never been migrated."""
    where = describe_dsn(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not exists:
            return None
        value = await conn.fetchval("SELECT version_num FROM alembic_version LIMIT 1")
        return str(value) if value is not None else None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc
    finally:
        await conn.close()
