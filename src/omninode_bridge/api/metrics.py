"""Prometheus metrics of one app instance, on a registry the app factory creates.

Request metrics are labelled by route template (``/v1/tools/{tool_id}``), never
by raw path, so label cardinality stays bounded. Registry-wide gauges (tools
by node type, healthy tools) are refreshed by the app in the background; pool
gauges are read at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every metric the server exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "toolreg_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "toolreg_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.registered_tools = Gauge(
            "toolreg_registered_tools", "Registered tools by node type.", ["node_type"], registry=r
        )
        self.healthy_tools = Gauge(
            "toolreg_healthy_tools", "Tools whose last heartbeat is within the TTL.", registry=r
        )
        self.heartbeats = Counter(
            "toolreg_heartbeats_received_total",
            "Heartbeats received (each tool id counts once).",
            registry=r,
        )
        self.change_events = Counter(
            "toolreg_change_events_total",
            "Change-feed events seen by this server, by kind.",
            ["kind"],
            registry=r,
        )
        self.pool_size = Gauge(
            "toolreg_db_pool_connections", "Database pool connections open.", registry=r
        )
        self.pool_in_use = Gauge(
            "toolreg_db_pool_connections_in_use", "Database pool connections in use.", registry=r
        )
        self.pool_max = Gauge(
            "toolreg_db_pool_connections_max", "Database pool ceiling.", registry=r
        )

    def bind_pool(
        self, size: Callable[[], float], in_use: Callable[[], float], max_size: Callable[[], float]
    ) -> None:
        """Read the pool gauges from these callables at scrape time."""
        self.pool_size.set_function(size)
        self.pool_in_use.set_function(in_use)
        self.pool_max.set_function(max_size)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")  # set by FastAPI's router once a route matched
    if route is not None and getattr(route, "path", None):
        return str(route.path)
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
