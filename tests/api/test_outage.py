"""The database stops under a running server: 503 with Retry-After, never 404/500; then recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from tests.api.conftest import bearer, start_server, stop_server
from tests.api.test_routes import assert_problem, body

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
                await http.post("/v1/tools", json=body("outage-tool"), headers=token)
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
            ready = None
            for _ in range(100):  # the change feed follows again after its backoff
                ready = await http.get("/ready")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert ready is not None and ready.status_code == 200, ready.text
    finally:
        stop_server(server)
