"""The database stops under a running server: 503 with Retry-After, never 404/500; then recovery."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from tests.support import assert_problem, bearer, start_server, stop_server, tool_body

pytestmark = pytest.mark.embedded


async def test_database_stopped_while_serving(temp_data_dir: Path) -> None:
    embedded = await start_embedded(temp_data_dir)
    dsn = embedded.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    server = start_server(dsn, env={"TOOLREG_CONNECT_TIMEOUT": "2"})
    try:
        token = bearer(await server.token("write"))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            assert (
                await http.post("/v1/tools", json=tool_body("outage-tool"), headers=token)
            ).status_code == 201
            await stop_embedded(temp_data_dir)
            for response in (
                await http.get("/v1/tools/outage-tool"),
                await http.get("/v1/tools"),
                await http.post("/v1/tools/outage-tool/heartbeat", headers=token),
                await http.post("/v1/tools/search", json={}),
                await http.get("/ready"),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdigit()
            assert_problem(await http.get("/v1/tools/outage-tool"), 503)
            assert (await http.get("/health")).status_code == 200

            await start_embedded(temp_data_dir)
            recovered = None
            for _ in range(3):  # a pooled connection that died may fail once more
                recovered = await http.get("/v1/tools/outage-tool")
                if recovered.status_code == 200:
                    break
            assert recovered is not None and recovered.status_code == 200
            assert (
                await http.post("/v1/tools/outage-tool/heartbeat", headers=token)
            ).status_code == 204
            ready: httpx.Response | None = None
            for _ in range(100):  # the change feed follows again after its backoff
                ready = await http.get("/ready")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert ready is not None, "no answer from /ready"
            assert ready.status_code == 200, ready.text
    finally:
        stop_server(server)


def _gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([\d.e+-]+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def test_ready_and_metrics_say_discovery_serves_a_stale_index(temp_data_dir: Path) -> None:
    """Database away: /ready and /metrics say discovery answers from its last known index,
    within the grace; past it, that discovery calls fail; back: current again."""
    embedded = await start_embedded(temp_data_dir)
    dsn = embedded.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    grace = 3.0
    server = start_server(
        dsn,
        env={"TOOLREG_CONNECT_TIMEOUT": "2", "TOOLREG_STALE_INDEX_GRACE_SECONDS": str(grace)},
    )
    try:
        token = bearer(await server.token("write"))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            detail = (await http.get("/ready")).json()["detail"]
            assert detail["discovery_index"] == "not loaded"
            created = await http.post("/v1/tools", json=tool_body("stale-tool"), headers=token)
            assert created.status_code == 201
            assert (await http.get("/v1/discover/stamp")).status_code == 200  # loads the index
            metrics = (await http.get("/metrics")).text
            assert _gauge(metrics, "toolreg_discovery_index_degraded") == 0
            assert _gauge(metrics, "toolreg_discovery_index_stale_seconds") == 0

            await stop_embedded(temp_data_dir)
            stopped = asyncio.get_running_loop().time()
            async with asyncio.timeout(10):
                while True:  # the index notices at its next heartbeat refresh (0.25 s)
                    ready = await http.get("/ready")
                    if ready.json()["detail"]["discovery_index"] != "current":
                        break
                    await asyncio.sleep(0.05)
            assert ready.status_code == 503
            detail = ready.json()["detail"]
            assert detail["database"] == "unavailable"
            assert detail["discovery_index"] == "stale", detail
            assert 0 < detail["discovery_index_stale_seconds"] <= grace
            # Within the grace, discovery answers from the index.
            assert (await http.get("/v1/discover/stamp")).json()["tool_id"] == "stale-tool"
            metrics = (await http.get("/metrics")).text
            assert _gauge(metrics, "toolreg_discovery_index_degraded") == 1
            assert _gauge(metrics, "toolreg_discovery_index_stale_seconds") > 0
            assert _gauge(metrics, "toolreg_discovery_index_unavailable") == 0
            assert _gauge(metrics, "toolreg_change_feed_following") == 0

            await asyncio.sleep(max(0.0, stopped + grace + 0.5 - asyncio.get_running_loop().time()))
            assert (await http.get("/ready")).json()["detail"]["discovery_index"] == "unavailable"
            assert (await http.get("/v1/discover/stamp")).status_code == 503
            metrics = (await http.get("/metrics")).text
            assert _gauge(metrics, "toolreg_discovery_index_unavailable") == 1

            await start_embedded(temp_data_dir)
            async with asyncio.timeout(30):
                while True:
                    ready = await http.get("/ready")
                    current = ready.json()["detail"]["discovery_index"] == "current"
                    if ready.status_code == 200 and current:
                        break
                    await asyncio.sleep(0.1)
            assert (await http.get("/v1/discover/stamp")).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert _gauge(metrics, "toolreg_discovery_index_degraded") == 0
            assert _gauge(metrics, "toolreg_discovery_index_unavailable") == 0
    finally:
        stop_server(server)
