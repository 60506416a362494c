"""``toolreg serve``: the registry's HTTP server (uvicorn) on the configured database.

The listening socket is bound first, before the database is started or
migrated and before the app starts: a taken port fails at once, with a clear
error and exit status 1, and never after an "Application startup complete".
uvicorn serves on that socket; the start line names the address it really has
(the port the kernel chose for ``--port 0``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import typer

from omninode_bridge.cli.common import settings_from
from omninode_bridge.errors import ConfigurationError, MigrationError

if TYPE_CHECKING:
    from omninode_bridge.settings import Settings

logger = logging.getLogger("omninode_bridge.serve")

LogLevelName = Literal["debug", "info", "warning", "error"]


async def _prepare(settings: Settings, migrate: bool) -> str:
    from omninode_bridge.migrations import runner  # alembic: imported only when serving
    from omninode_bridge.services.postgres_client import describe_dsn, resolve_dsn

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


def bind(host: str, port: int, uds: str | None) -> socket.socket:
    """A socket bound to ``host:port`` (or the Unix socket ``uds``), not yet listening.

    Raises ConfigurationError naming the address and the reason (a port in use,
    an address this machine does not have, a path that exists).
    """
    if uds is not None:
        if os.path.exists(uds):
            raise ConfigurationError(
                f"cannot listen on unix socket {uds}: the path exists "
                "(another server's socket? remove it if nothing uses it)"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = uds
        where = f"unix socket {uds}"
    else:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        sock = socket.socket(family, kind, proto)
        # What uvicorn does too: a restart may reuse a port whose old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        where = f"{host}:{port}"
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = (
            ": another process listens there (another toolreg serve?); "
            "pick another with --port or TOOLREG_PORT, or 0 for any free port"
            if exc.errno == errno.EADDRINUSE
            else f": {exc.strerror}"
        )
        raise ConfigurationError(f"cannot listen on {where}{hint}") from exc
    sock.set_inheritable(True)
    return sock


def _release(sock: socket.socket, uds: str | None) -> None:
    """Close ``sock`` and remove its Unix socket: for a server that did not start (one
    that did removes it in its shutdown)."""
    sock.close()
    if uds is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uds)


def address_of(sock: socket.socket) -> str:
    """``http://host:port`` (``[v6]`` bracketed) or ``unix:path``: what ``sock`` is bound to."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server_class() -> type[Any]:
    import asyncio

    import uvicorn  # imported only when serving

    class _Server(uvicorn.Server):
        """Tells the app when shutdown begins, so endless streams end and draining is quick;
        says where it serves once the app has started (uvicorn does not, on a given socket)."""

        database = ""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state = getattr(getattr(self.config.app, "state", None), "toolreg", None)
            if state is not None:
                asyncio.get_event_loop().call_soon_threadsafe(state.stopping.set)
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and sockets:
                where = ", ".join(address_of(s) for s in sockets)
                logger.info("serving %s; registry on %s", where, self.database)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Here, not after serve(): uvicorn re-raises the SIGTERM it caught once serve()
            # returns, and that ends the process before any code after it runs.
            paths = [s.getsockname() for s in sockets or () if s.family == socket.AF_UNIX]
            await super().shutdown(sockets)
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    return _Server


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None,
        "--host",
        metavar="HOST",
        show_default="TOOLREG_HOST, else 127.0.0.1",
        help="Interface to bind.",
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        metavar="PORT",
        min=0,
        max=65535,
        show_default="TOOLREG_PORT, else 8080",
        help="Port to bind; 0 picks a free one (the start line names it).",
    ),
    uds: str | None = typer.Option(
        None, "--uds", metavar="SOCKET", help="Listen on this Unix socket instead of host:port."
    ),
    no_migrate: bool = typer.Option(
        False, "--no-migrate", help="Do not apply migrations at start."
    ),
    log_level: LogLevelName = typer.Option(
        "info",
        "--log-level",
        metavar="LEVEL",
        case_sensitive=False,
        help="debug, info, warning or error; info includes the access log.",
    ),
) -> None:
    """Run the registry server. SIGTERM drains in-flight requests, then closes the pool.

    A connection whose request headers are not complete within
    TOOLREG_HEADER_TIMEOUT_SECONDS (default 10) is answered 408 and closed.
    Logs go to stderr with ISO 8601 timestamps, as text or, with
    TOOLREG_LOG_FORMAT=json, one JSON object per line.
    """
    import asyncio

    import uvicorn
    import uvloop

    from omninode_bridge.api import create_app  # FastAPI: imported only when serving
    from omninode_bridge.api.header_timeout import with_header_timeout
    from omninode_bridge.logs import configure
    from omninode_bridge.services.postgres_client import describe_dsn

    settings = settings_from(ctx)
    configure(log_level, settings.log_format)
    sock = bind(host or settings.host, settings.port if port is None else port, uds)
    try:
        dsn = asyncio.run(_prepare(settings, migrate=not no_migrate))
        config = uvicorn.Config(
            create_app(settings, dsn=dsn),
            lifespan="on",
            log_config=None,  # configure() above: one format for every logger
            log_level=log_level.lower(),
            timeout_graceful_shutdown=30,
            server_header=False,
            access_log=False,  # AccessLogMiddleware logs each request, with its token's name
            # httptools with a header deadline (slowloris).
            http=with_header_timeout(settings.header_timeout_seconds),
        )
        server = _server_class()(config)
        server.database = describe_dsn(dsn)
        uvloop.run(server.serve(sockets=[sock]))  # asyncpg and uvicorn are quicker on uvloop
    except BaseException:
        _release(sock, uds)
        raise
    if not server.started:
        _release(sock, uds)
        raise typer.Exit(1)
