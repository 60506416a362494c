"""A tool whose active health checks fail (critical, heartbeat fresh) on a real server with
checks on: ``search_tools`` leaves it out unless asked, ``get_tool`` and ``discover`` say why,
``call_tool`` goes to the healthy one, and ``/v0.1`` lists its server as deprecated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.mcp.helpers import mcp_client, ok, register
from tests.api.mcp.registry_schema import OFFICIAL, check_entry
from tests.services.discovery.tool_server import ToolServer
from tests.support import Server, free_port, running_server

ENV = {
    "TOOLREG_TTL_SECONDS": "60",  # no heartbeat lapses during the test: critical only
    "TOOLREG_RETENTION_SECONDS": "3600",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "0.2",
    "TOOLREG_CHECK_TIMEOUT_SECONDS": "0.5",
    "TOOLREG_CHECK_FAIL_THRESHOLD": "1",
}


@pytest.fixture(scope="module")
def checking(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env=ENV) as running:
        yield running


def _tool(tool_id: str, operation: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "compute",
        "capabilities": {"operations": [operation]},
        "endpoints": {operation: url, "mcp": "http://10.0.0.9:8000/mcp"},
        "metadata": {"mcp_name": f"org.health/{tool_id}", "version": "1.0.0"},
        **extra,
    }


async def test_a_critical_tool_is_left_out_explained_and_deprecated(
    checking: Server, uid: str
) -> None:
    token = await checking.token("write")
    op = f"crit-{uid}"
    sick, fine = f"{op}-sick", f"{op}-fine"
    async with ToolServer("fine") as fine_tool, ToolServer("sick") as sick_tool:
        # The sick one's health endpoint is a port nobody listens on; the fine one has none.
        dead = f"http://127.0.0.1:{free_port()}/health"
        await register(checking, token, _tool(sick, op, sick_tool.url("/s"), health_endpoint=dead))
        await register(checking, token, _tool(fine, op, fine_tool.url("/f")))
        async with mcp_client(checking, token) as client:
            tool: dict[str, Any] = {}
            for _ in range(100):
                tool = ok(await client.call_tool("get_tool", {"tool_id": sick}))
                if tool["health"]["status"] == "critical":
                    break
                await asyncio.sleep(0.1)
            assert tool["health"]["status"] == "critical"
            assert tool["health"]["heartbeat_fresh"] is True
            assert tool["health"]["check_since"] is not None

            healthy = ok(await client.call_tool("search_tools", {"operation": op}))
            for _ in range(50):  # the live view hears of the check's verdict
                if [t["tool_id"] for t in healthy["tools"]] == [fine]:
                    break
                await asyncio.sleep(0.1)
                healthy = ok(await client.call_tool("search_tools", {"operation": op}))
            assert [t["tool_id"] for t in healthy["tools"]] == [fine]
            every = ok(
                await client.call_tool("search_tools", {"operation": op, "healthy_only": False})
            )
            assert {t["tool_id"]: t["health"] for t in every["tools"]} == {
                fine: "healthy",
                sick: "critical",
            }

            found = ok(await client.call_tool("discover", {"operation": op}))
            reasons = {t["tool_id"]: t["reason"] for t in found["explanation"]["tools"]}
            assert reasons == {sick: "critical", fine: "routable"}
            assert found["tool"]["tool_id"] == fine
            for n in range(5):
                arguments = {"operation": op, "payload": {"n": n}}
                assert ok(await client.call_tool("call_tool", arguments))["tool"] == "fine"
        assert sick_tool.requests == []

    async with httpx.AsyncClient(base_url=checking.base_url, timeout=10) as http:
        for tool_id, status in ((sick, "deprecated"), (fine, "active")):
            response = await http.get(f"/v0.1/servers/org.health%2F{tool_id}/versions/1.0.0")
            entry = response.json()
            check_entry(entry)
            assert entry["_meta"][OFFICIAL]["status"] == status, entry
