"""A heartbeat that moves backwards reaches a real server's discovery index at once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from omninode_bridge.services import ToolRegistrationRepository
from tests.liveness.servers import spawn, stop
from tests.services.discovery.helpers import register

LIMIT = 3.0  # the index reads heartbeats every 0.25 s; its full sweep comes every 60 s


async def test_discover_stops_routing_to_a_tool_whose_heartbeat_moved_back(
    db_dsn: str, repository: ToolRegistrationRepository, tmp_path: Path
) -> None:
    await register(repository, "k3", "http://127.0.0.1:9", operations=("opK3",))
    server = spawn(db_dsn, tmp_path / "server.log", {})
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            found = await http.get("/v1/discover/opK3")
            assert found.status_code == 200 and found.json()["tool_id"] == "k3"
            now = datetime.now(UTC)
            assert await repository.update_heartbeat("k3", now + timedelta(seconds=30))
            await asyncio.sleep(1.0)  # the index has read the heartbeat in the future
            assert (await http.get("/v1/discover/opK3")).status_code == 200
            assert await repository.update_heartbeat("k3", now - timedelta(days=1))
            page = await repository.find_tools(max_age_seconds=300)
            assert [t.tool_id for t in page.items] == []  # the row says: not healthy
            started = time.monotonic()
            while (answer := await http.get("/v1/discover/opK3")).status_code == 200:
                assert time.monotonic() - started < LIMIT, "discovery still routes to k3"
                await asyncio.sleep(0.05)
            assert answer.status_code == 404
            # And forward again: routable again.
            assert await repository.update_heartbeat("k3")
            started = time.monotonic()
            while (await http.get("/v1/discover/opK3")).status_code != 200:
                assert time.monotonic() - started < LIMIT, "discovery did not take k3 back"
                await asyncio.sleep(0.05)
    finally:
        stop(server)
