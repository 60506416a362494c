"""The app factory: ``create_app(settings)`` builds one registry server, state and all.

Nothing lives at module level: the factory creates the metrics registry and
the MCP server for this app alone; the lifespan creates the pool and the
services, binds their metrics to that registry, and hangs them off
``app.state.toolreg``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from omninode_bridge import __version__
from omninode_bridge.api import consul, sd, ui
from omninode_bridge.api.access_log import AccessLogMiddleware
from omninode_bridge.api.body_limit import BodyLimitMiddleware
from omninode_bridge.api.mcp import McpFace
from omninode_bridge.api.metrics import Metrics, MetricsMiddleware
from omninode_bridge.api.problems import install_problem_handlers
from omninode_bridge.api.routes import (
    changes,
    discover,
    health,
    history,
    meta,
    search,
    tokens,
    tools,
)
from omninode_bridge.api.routes.fast_heartbeat import FastHeartbeatRoute
from omninode_bridge.api.state import AppState
from omninode_bridge.autodiscovery import BridgeMetrics, bridges_from_settings
from omninode_bridge.errors import OmniNodeBridgeError
from omninode_bridge.liveness import LivenessRunner
from omninode_bridge.models import ChangeEvent
from omninode_bridge.models.fields import JsonLimits, json_limits
from omninode_bridge.services import (
    PostgresClient,
    ToolDiscoveryService,
    ToolRegistrationRepository,
)
from omninode_bridge.services.feed_hub import FeedHub
from omninode_bridge.services.heartbeat_coalescer import HeartbeatCoalescer
from omninode_bridge.services.live_view import LiveView
from omninode_bridge.services.tokens import TokenService
from omninode_bridge.settings import Settings, load_settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
GAUGE_REFRESH_SECONDS = 5.0


class _JsonLimitsMiddleware:
    """Applies the configured JSON bounds to every request's validation."""

    def __init__(self, app: ASGIApp, limits: JsonLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = json_limits.set(self.limits)
        try:
            await self.app(scope, receive, send)
        finally:
            json_limits.reset(token)


async def _refresh_gauges(state: AppState) -> None:
    while True:
        try:
            for node_type, count in (await state.repository.count_per_node_type()).items():
                state.metrics.registered_tools.labels(node_type).set(count)
            healthy = await state.repository.count_healthy(state.settings.ttl_seconds)
            state.metrics.healthy_tools.set(healthy)
        except OmniNodeBridgeError as exc:
            logger.warning("could not refresh registry gauges: %s", exc)
        await asyncio.sleep(GAUGE_REFRESH_SECONDS)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %s", task.get_name(), task.exception())


def create_app(settings: Settings | None = None, *, dsn: str | None = None) -> FastAPI:
    """A registry server app on ``dsn`` (default: from ``settings``; embedded if none).

    The schema must already be at head: ``toolreg serve`` migrates before it
    starts the app.
    """
    settings = settings if settings is not None else load_settings()
    metrics = Metrics()
    # The MCP face: a new MCP server per app; it reads the state once the lifespan set it.
    mcp = McpFace(settings, lambda: app.state.toolreg)
    app = FastAPI(
        title="omninode tool registry",
        version=__version__,
        description=(
            "Register tools with their node type, capabilities and endpoints, keep them "
            "alive with heartbeats, and find them by capability. Errors are RFC 9457 "
            "problem+json. Writes need `Authorization: Bearer <token>` "
            "(`toolreg token create`)."
        ),
        lifespan=_lifespan(settings, dsn, metrics, mcp),
        # meta.router serves these, behind TOOLREG_READS_REQUIRE_TOKEN when it is set.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    _add_routes(app, settings, mcp)
    _add_middlewares(app, settings, metrics)
    return app


def _lifespan(
    settings: Settings, dsn: str | None, metrics: Metrics, mcp: McpFace
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: open the state, start the background work, close it all after."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _open_state(settings, dsn, metrics)
        app.state.toolreg = state
        liveness = LivenessRunner(state.client, state.repository, settings, metrics.registry)
        try:
            await _start(state, liveness)
            async with mcp.running():  # the MCP SDK's session manager, once per app
                yield
        finally:
            await _close(state, liveness)

    return lifespan


async def _open_state(settings: Settings, dsn: str | None, metrics: Metrics) -> AppState:
    """Connect the pool and build the services (none started yet), their metrics bound."""
    client = PostgresClient(settings, dsn=dsn)
    await client.connect()
    repository = ToolRegistrationRepository(client)
    hub = _feed_hub(repository, settings, metrics)
    state = AppState(
        settings=settings,
        client=client,
        repository=repository,
        tokens=TokenService(client, cache_seconds=settings.token_cache_seconds),
        metrics=metrics,
        hub=hub,
        # Its index loads on the first discovery request, then follows the feed.
        discovery=ToolDiscoveryService(repository, settings),
        # Loads on the first Consul or Prometheus SD request, then follows the hub.
        live_view=LiveView(repository, hub, keys=consul.service_names),
    )
    pool = client.pool
    metrics.bind_pool(
        lambda: float(pool.get_size()),
        lambda: float(pool.get_size() - pool.get_idle_size()),
        lambda: float(pool.get_max_size()),
    )
    metrics.bind_discovery(state.discovery.metrics, settings.stale_index_grace_seconds)
    if settings.heartbeat_batch_window_ms > 0:
        state.heartbeats = HeartbeatCoalescer(
            state.tokens.heartbeats,
            window=settings.heartbeat_batch_window_ms / 1000,
            max_batch=settings.heartbeat_batch_max,
        )
    return state


def _feed_hub(
    repository: ToolRegistrationRepository, settings: Settings, metrics: Metrics
) -> FeedHub:
    """The hub that fans the change feed out to this server's streams, counted in ``metrics``."""

    def count_event(event: ChangeEvent) -> None:
        metrics.change_events.labels(event.kind.value).inc()

    def feed_following(following: bool) -> None:
        metrics.feed_following.set(1 if following else 0)
        if not following:
            metrics.feed_interruptions.inc()

    return FeedHub(
        repository.feed,
        buffer_bytes=settings.sse_buffer_bytes,
        on_event=count_event,
        on_following=feed_following,
    )


async def _start(state: AppState, liveness: LivenessRunner) -> None:
    """Start the feed, the live view, liveness, the gauges and auto-discovery."""
    settings = state.settings
    await state.hub.start()
    # The console, Consul and Prometheus SD read the live view: load it now, in the
    # background, so that their first reader does not wait for a large registry.
    state.live_view.start()
    await liveness.start()
    _background(state, _refresh_gauges(state), "registry gauges")
    bridges = bridges_from_settings(
        settings, state.repository, metrics=BridgeMetrics(state.metrics.registry)
    )
    for bridge in bridges:  # auto-discovery: etcd when TOOLREG_ETCD_ENDPOINTS is set
        _background(state, bridge.run(), f"autodiscovery {bridge.source.name}")
    # What start-up built (modules, settings, pools) lives as long as the
    # process: out of the collector's way, a full collection no longer
    # walks it (the cost of a large response grew with it).
    gc.freeze()


def _background(state: AppState, work: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_log_failure)
    state.background.append(task)


async def _close(state: AppState, liveness: LivenessRunner) -> None:
    """Stop everything :func:`_start` started, then the services and the pool."""
    await liveness.aclose()  # first: a replica takes the leader's lock at once
    if state.heartbeats is not None:  # heartbeats still pending are written
        await state.heartbeats.aclose()
    for task in state.background:
        task.cancel()
    # Failures of these tasks were logged when they happened (_log_failure).
    await asyncio.gather(*state.background, return_exceptions=True)
    await state.live_view.aclose()
    await state.hub.aclose()
    await state.discovery.aclose()
    await state.client.close()


def _add_routes(app: FastAPI, settings: Settings, mcp: McpFace) -> None:
    for module in (health, tools, history, search, discover, changes, tokens):
        app.include_router(module.router)
    app.include_router(meta.router(guarded=settings.reads_require_token))
    app.include_router(sd.router)
    app.include_router(consul.router)
    ui.install(app, settings)  # the web console: /ui/ (and / redirects there)
    app.include_router(mcp.registry_router)
    # /mcp is an exact path that no other route shares, so it goes first: its calls
    # skip matching every other route.
    app.router.routes.insert(0, mcp.route)
    if settings.heartbeat_batch_window_ms > 0:  # the coalesced heartbeat's common case
        app.router.routes.insert(0, FastHeartbeatRoute())


def _add_middlewares(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """The middlewares, innermost first: the last one added sees the request first."""
    limits = JsonLimits(
        max_bytes=settings.max_json_bytes, max_registration_bytes=settings.max_registration_bytes
    )
    app.add_middleware(_JsonLimitsMiddleware, limits=limits)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)  # outermost: it times what the client waits for
