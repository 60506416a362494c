"""``toolreg autodiscover``: feed the registry from a discovery source, in the foreground."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING

import typer

from omninode_bridge.cli.claims import allow, status
from omninode_bridge.cli.common import console, run_async, settings_from
from omninode_bridge.errors import ConfigurationError, MigrationError

if TYPE_CHECKING:  # the sources (gRPC, httpx), asyncpg and alembic load when a command runs
    from omninode_bridge.autodiscovery import DiscoveryBridge, DiscoverySource
    from omninode_bridge.services import PostgresClient
    from omninode_bridge.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    help="Register the tools that announce themselves in a discovery service (etcd, Consul).",
    no_args_is_help=True,
)
# Claims of released tool_ids: what sources hold and what waits for consent (cli/claims.py).
app.command("status")(status)
app.command("allow")(allow)

# The options every source's command takes, declared once (typer copies a default's
# OptionInfo for each command that uses it).
_METRICS_PORT = typer.Option(
    None,
    "--metrics-port",
    metavar="PORT",
    min=0,
    max=65535,
    help="Serve Prometheus metrics on 127.0.0.1.",
)
_LOG_LEVEL = typer.Option(
    "info", "--log-level", metavar="LEVEL", help="debug, info, warning or error."
)


async def _check_schema(client: PostgresClient, settings: Settings) -> None:
    from omninode_bridge.migrations import runner
    from omninode_bridge.services.postgres_client import describe_dsn

    current = await runner.current_revision(client.dsn, settings.connect_timeout)
    head = runner.head_revision()
    if current != head:
        raise MigrationError(
            f"database {describe_dsn(client.dsn)} is at revision {current or '(none)'}, "
            f"this bridge needs {head}: run `toolreg db upgrade`"
        )


async def _say_when_synced(bridge: DiscoveryBridge) -> None:
    await bridge.synced.wait()
    console.print(
        f"following {bridge.source.description} at revision {bridge.revision}; "
        f"tools owned by {bridge.owner!r}"
    )


async def _run(
    settings: Settings, source: DiscoverySource, mark_stale: bool, metrics_port: int | None
) -> None:
    import asyncio

    from prometheus_client import start_http_server

    from omninode_bridge.autodiscovery import BridgeMetrics, DiscoveryBridge, RemovalMode
    from omninode_bridge.services import PostgresClient, ToolRegistrationRepository

    mode = RemovalMode.MARK_STALE if mark_stale else RemovalMode.DELETE
    metrics = BridgeMetrics()
    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 4})
    async with PostgresClient(small) as client:
        await _check_schema(client, settings)
        bridge = DiscoveryBridge(
            source,
            ToolRegistrationRepository(client),
            mode=mode,
            ttl_seconds=settings.ttl_seconds,
            max_json_bytes=settings.max_json_bytes,
            metrics=metrics,
            claim_hold_seconds=settings.claim_hold_seconds,
        )
        server = None
        if metrics_port is not None:
            server, _ = start_http_server(metrics_port, "127.0.0.1", registry=metrics.registry)
            console.print(f"metrics on http://127.0.0.1:{metrics_port}/metrics")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        running = asyncio.create_task(bridge.run(), name="bridge")
        helpers = [asyncio.create_task(_say_when_synced(bridge)), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait([running, helpers[1]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (running, *helpers):
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await running  # re-raises what ended the bridge, if it was not the stop
            if server is not None:
                server.shutdown()
    console.print("stopped")


@app.command()
def etcd(
    ctx: typer.Context,
    endpoints: str | None = typer.Option(
        None,
        "--endpoints",
        metavar="URLS",
        help="Comma-separated etcd client URLs, http://host:port [TOOLREG_ETCD_ENDPOINTS].",
    ),
    prefix: str | None = typer.Option(
        None,
        "--prefix",
        metavar="PREFIX",
        help="Key prefix: the key PREFIX + TOOL_ID announces a tool "
        "[TOOLREG_ETCD_PREFIX, default /omninode/tools/].",
    ),
    mark_stale: bool = typer.Option(
        False,
        "--mark-stale",
        help="When a key goes, mark its tool stale (heartbeat at the epoch), do not remove it.",
    ),
    timeout: float = typer.Option(
        5.0, "--timeout", metavar="SECONDS", min=0.1, help="Seconds for each etcd call."
    ),
    metrics_port: int | None = _METRICS_PORT,
    log_level: str = _LOG_LEVEL,
) -> None:
    """Follow etcd until interrupted: keys under the prefix become registrations.

    A key's value is a registration in JSON (tool_id may be left out: the key
    gives it). The tool stays healthy while the key exists (keep it alive with
    an etcd lease) and leaves the registry when the key is deleted or its
    lease expires. Tools registered over HTTP are never changed or removed.
    """
    from omninode_bridge.autodiscovery import EtcdSource, parse_endpoints

    settings = settings_from(ctx)
    raw = endpoints or settings.etcd_endpoints
    if not raw:
        raise ConfigurationError(
            "no etcd endpoints: pass --endpoints or set TOOLREG_ETCD_ENDPOINTS"
        )
    variable = "--endpoints" if endpoints else "TOOLREG_ETCD_ENDPOINTS"
    source = EtcdSource(
        parse_endpoints(raw, variable), prefix or settings.etcd_prefix, timeout=timeout
    )
    _follow(settings, source, mark_stale, metrics_port, log_level)


def _follow(
    settings: Settings,
    source: DiscoverySource,
    mark_stale: bool,
    metrics_port: int | None,
    log_level: str,
) -> None:
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigurationError("--log-level: must be one of debug, info, warning, error")
    from omninode_bridge.logs import configure

    # The level applies to this package's loggers; libraries stay at warnings.
    configure("warning", settings.log_format)
    logging.getLogger("omninode_bridge").setLevel(log_level.upper())
    run_async(_run(settings, source, mark_stale, metrics_port))


@app.command()
def consul(
    ctx: typer.Context,
    address: str | None = typer.Option(
        None,
        "--address",
        metavar="URL",
        help="Consul's HTTP API, http://host:8500 [TOOLREG_CONSUL_ADDRESS].",
    ),
    service: list[str] = typer.Option(
        [],
        "--service",
        metavar="NAME",
        show_default=False,
        help="Follow only this service (repeat for more) [TOOLREG_CONSUL_SERVICES, "
        "comma-separated; default every service].",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        metavar="TOKEN",
        help="ACL token, sent as X-Consul-Token [TOOLREG_CONSUL_TOKEN].",
    ),
    mark_stale: bool = typer.Option(
        False,
        "--mark-stale",
        help="When an instance goes, mark its tool stale (heartbeat at the epoch), keep it.",
    ),
    metrics_port: int | None = _METRICS_PORT,
    log_level: str = _LOG_LEVEL,
) -> None:
    """Follow Consul's catalog until interrupted: service instances become registrations.

    An instance (Service.ID) becomes a tool of that id whose operations are
    the services it belongs to, each with its address and port as endpoint;
    Service.Meta becomes metadata. It leaves the registry when it is
    deregistered or stays critical past the TTL; an unreachable Consul removes
    nothing. Another registry's Consul-compatible API works too (a federation).
    """
    from omninode_bridge.autodiscovery.configure import consul_source

    settings = settings_from(ctx)
    source = consul_source(settings, address, service or None, token)
    _follow(settings, source, mark_stale, metrics_port, log_level)
