"""Prometheus metrics of one app instance, on a registry the app factory creates.

Request metrics are labelled from closed sets only, whatever clients send: the
method is one of ``KNOWN_METHODS`` or ``other``, the route is the matched route
template (``/v1/tools/{tool_id}``) or ``unmatched``, never the raw path. A flood
of made-up methods or paths therefore cannot grow the exposition. Registry-wide
gauges (tools by node type, healthy tools) are refreshed by the app in the
background; pool gauges and the discovery service's metrics
(``toolreg_discovery_*``, :mod:`omninode_bridge.api.discovery_metrics`) are
read at scrape time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from omninode_bridge.api.discovery_metrics import DiscoveryCollector
from omninode_bridge.api.reporting import answer_then_report
from omninode_bridge.metrics_support import MetricSet, counter, gauge, histogram

__all__ = ["KNOWN_METHODS", "Metrics", "MetricsMiddleware"]

if TYPE_CHECKING:
    from omninode_bridge.services.discovery.metrics import DiscoveryMetrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class Metrics(MetricSet):
    """Every metric the server exports (``registry``: a private one by default)."""

    requests = counter(
        "toolreg_http_requests_total",
        "HTTP requests by method, route template and status code.",
        ["method", "route", "status"],
    )
    latency = histogram(
        "toolreg_http_request_duration_seconds",
        "HTTP request latency by method and route template.",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
    )
    registered_tools = gauge(
        "toolreg_registered_tools", "Registered tools by node type.", ["node_type"]
    )
    healthy_tools = gauge("toolreg_healthy_tools", "Tools whose last heartbeat is within the TTL.")
    heartbeats = counter(
        "toolreg_heartbeats_received_total", "Heartbeats received (each tool id counts once)."
    )
    change_events = counter(
        "toolreg_change_events_total", "Change-feed events seen by this server, by kind.", ["kind"]
    )
    pool_size = gauge("toolreg_db_pool_connections", "Database pool connections open.")
    pool_in_use = gauge("toolreg_db_pool_connections_in_use", "Database pool connections in use.")
    pool_max = gauge("toolreg_db_pool_connections_max", "Database pool ceiling.")
    feed_following = gauge(
        "toolreg_change_feed_following",
        "1 while this server follows the change feed (SSE streams are live), else 0.",
    )
    feed_interruptions = counter(
        "toolreg_change_feed_interruptions_total",
        "Times this server lost the change feed (open streams were ended).",
    )
    sse_dropped = counter(
        "toolreg_sse_subscribers_dropped_total",
        "SSE streams ended because the client fell too far behind (TOOLREG_SSE_BUFFER_BYTES).",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.discovery = DiscoveryCollector()
        self.registry.register(self.discovery)
        # One exposition is generated at a time: concurrent scrapes queue here
        # rather than each taking a worker thread of the default executor.
        self._exposing = asyncio.Lock()

    def bind_pool(
        self, size: Callable[[], float], in_use: Callable[[], float], max_size: Callable[[], float]
    ) -> None:
        """Read the pool gauges from these callables at scrape time.

        Scrapes run in a worker thread (``exposition``): the callables must
        only read, and must not need the event loop.
        """
        self.pool_size.set_function(size)
        self.pool_in_use.set_function(in_use)
        self.pool_max.set_function(max_size)

    def bind_discovery(self, discovery: DiscoveryMetrics, grace_seconds: float) -> None:
        """Export ``discovery`` as the ``toolreg_discovery_*`` metrics, read at scrape time."""
        self.discovery.bind(discovery, grace_seconds)

    async def exposition(self) -> bytes:
        """The text exposition of every metric, generated in a worker thread.

        Generating it walks every series and takes time proportional to their
        number; off the event loop, a scrape never holds up other requests.
        """
        async with self._exposing:
            return await asyncio.to_thread(generate_latest, self.registry)


def _route_template(scope: Scope) -> str:
    """The template of the route ``scope`` was routed to, or ``unmatched``.

    A path whose route exists but not for this method (a 405) keeps that
    route's template, so the label set stays the app's own routes.
    """
    route = scope.get("route")  # set by FastAPI's router on a full or method-only match
    if route is not None and getattr(route, "path", None):
        return str(route.path)
    # Routes that do not set it: match as the router did, a full match before a method-only one.
    app = scope.get("app")
    router = getattr(app, "router", None)
    method_only: str | None = None
    for route in getattr(router, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", None) or UNMATCHED)
        if match == Match.PARTIAL and method_only is None:
            method_only = str(getattr(route, "path", None) or UNMATCHED)
    return method_only or UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await answer_then_report(self.app, scope, receive, send, self._count)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        route = _route_template(scope)
        method = scope.get("method", "GET")
        if method not in KNOWN_METHODS:
            method = "other"
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
