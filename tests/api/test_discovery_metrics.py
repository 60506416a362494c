"""The discovery service's metrics on a real ``toolreg serve``'s ``/metrics``: every
``toolreg_discovery_*`` family from the first scrape, the index's after a discover request,
an ejection and the call outcomes after ``call_tool`` reached a tool that refuses
connections, then one that answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.mcp.helpers import ENV, failed, mcp_client, ok, register, routable
from tests.services.discovery.tool_server import ToolServer
from tests.support import Server, free_port, operation_body, running_server

# The discovery intervals come from settings: quicker than the defaults, and accepted.
DISCOVERY_ENV = {
    **ENV,
    "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS": "0.1",
    "TOOLREG_DISCOVERY_FEED_POLL_INTERVAL_SECONDS": "0.25",
    "TOOLREG_DISCOVERY_STALL_SECONDS": "5",
}

COUNTERS = {
    "calls",
    "failovers",
    "ejections",
    "index_loads",
    "feed_events",
    "feed_reconnects",
    "heartbeat_refreshes",
    "heartbeat_rows",
    "sync_failures",
}
GAUGES = {"index_tools", "index_stale_seconds", "index_degraded", "index_unavailable"}


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env=DISCOVERY_ENV) as running:
        yield running


async def discovery_metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every ``toolreg_discovery_*`` sample: (name, labels) -> value."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name.startswith("toolreg_discovery_") and not s.name.endswith("_created"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[("toolreg_discovery_" + name, tuple(sorted(labels.items())))]


async def test_every_discovery_metric_is_exported(registry: Server) -> None:
    samples = await discovery_metrics(registry)
    names = {name for name, _ in samples}
    expected = {f"toolreg_discovery_{n}_total" for n in COUNTERS}
    expected |= {f"toolreg_discovery_{n}" for n in GAUGES}
    assert names == expected, names ^ expected
    # The only label is the call outcome, from a closed set.
    assert {labels for _, labels in samples if labels} == {
        (("outcome", "answered"),),
        (("outcome", "failed"),),
    }
    assert value(samples, "index_degraded") == 0
    assert value(samples, "index_unavailable") == 0


async def test_discover_loads_and_counts_the_index(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    op = f"metrics-discover-{uid}"
    async with ToolServer("live") as live:
        await register(registry, token, operation_body(f"{op}-1", op, live.url("/x")))
        async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
            response = await http.get(f"/v1/discover/{op}")
            for _ in range(100):  # the index follows the feed a few milliseconds behind
                if response.status_code == 200:
                    break
                response = await http.get(f"/v1/discover/{op}")
            assert response.status_code == 200, response.text
    samples = await discovery_metrics(registry)
    assert value(samples, "index_loads_total") >= 1
    assert value(samples, "index_tools") >= 1
    # Heartbeats are refreshed in the background, every 0.1 s here.
    for _ in range(100):
        if value(samples, "heartbeat_refreshes_total") >= 1:
            break
        await asyncio.sleep(0.05)
        samples = await discovery_metrics(registry)
    assert value(samples, "heartbeat_refreshes_total") >= 1


async def test_an_ejection_and_call_outcomes_are_counted(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    op = f"metrics-eject-{uid}"
    dead = f"http://127.0.0.1:{free_port()}/x"  # nothing listens: the connection is refused
    await register(registry, token, operation_body(f"{op}-dead", op, dead))
    await routable(registry, op, 1)
    before = await discovery_metrics(registry)
    async with mcp_client(registry, token) as client:
        error = failed(await client.call_tool("call_tool", {"operation": op, "payload": {}}))
        assert "could not be reached" in error["message"], error
    after = await discovery_metrics(registry)
    assert value(after, "ejections_total") == value(before, "ejections_total") + 1
    failed_calls = value(after, "calls_total", outcome="failed")
    assert failed_calls == value(before, "calls_total", outcome="failed") + 1
    answered = value(after, "calls_total", outcome="answered")

    live_op = f"metrics-answer-{uid}"
    async with ToolServer("live") as live:
        await register(registry, token, operation_body(f"{live_op}-1", live_op, live.url("/x")))
        await routable(registry, live_op, 1)
        async with mcp_client(registry, token) as client:
            ok(await client.call_tool("call_tool", {"operation": live_op, "payload": {}}))
    final = await discovery_metrics(registry)
    assert value(final, "calls_total", outcome="answered") == answered + 1
