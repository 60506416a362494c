"""``GET /v1/discover/{op}`` says why nothing is routable; RegistryClient says the same."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from omninode_bridge.client import RegistryClient
from omninode_bridge.errors import NoRoutableToolError
from tests.support import Server, bearer, free_port, operation_body, running_server

ENV = {
    "TOOLREG_TTL_SECONDS": "1.5",
    "TOOLREG_RETENTION_SECONDS": "3600",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "0.2",
    "TOOLREG_CHECK_TIMEOUT_SECONDS": "0.5",
    "TOOLREG_CHECK_FAIL_THRESHOLD": "1",
}


@pytest.fixture(scope="module")
def explaining(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env=ENV) as running:
        yield running


def _tool(tool_id: str, operation: str, **extra: Any) -> dict[str, Any]:
    """An effect offering ``operation`` on a loopback port where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}/{operation}"
    return operation_body(tool_id, operation, url) | extra


async def _reasons(http: httpx.AsyncClient, operation: str) -> dict[str, Any]:
    for _ in range(100):
        response = await http.get(f"/v1/discover/{operation}")
        body: dict[str, Any] = response.json()
        if response.status_code == 404 and body["tools"]:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"never unroutable: {body}")


async def test_the_404_says_how_many_declare_it_and_why_each_is_out(
    explaining: Server, uid: str
) -> None:
    token = bearer(await explaining.token("write"))
    op = f"explain-{uid}"
    async with httpx.AsyncClient(base_url=explaining.base_url, timeout=10) as http:
        nobody = await http.get(f"/v1/discover/none-{uid}")
        assert nobody.status_code == 404
        assert nobody.json()["declared"] == 0 and "no registered tool" in nobody.json()["detail"]

        # Critical: its health endpoint answers nothing (a port nobody listens on).
        sick = _tool(f"sick-{uid}", op, health_endpoint=f"http://127.0.0.1:{free_port()}/h")
        assert (await http.put(f"/v1/tools/sick-{uid}", json=sick, headers=token)).is_success
        no_endpoint = {**_tool(f"bare-{uid}", op), "endpoints": {}}
        assert (await http.put(f"/v1/tools/bare-{uid}", json=no_endpoint, headers=token)).is_success
        body = await _reasons(http, op)
        reasons = {t["tool_id"]: t for t in body["tools"]}
        assert body["declared"] == 2 and body["routable"] == 0
        assert body["title"] == "No routable tool"
        # The heartbeat (TTL 1.5 s) or the failing check takes it out, whichever comes first.
        assert reasons[f"sick-{uid}"]["reason"] in ("critical", "stale")
        assert "since" in reasons[f"sick-{uid}"]
        assert reasons[f"bare-{uid}"]["reason"] in ("no_endpoint", "stale")
        assert "2 registered tools list it" in body["detail"]

        async with RegistryClient(explaining.base_url, None) as client:
            assert await client.discover(op) is None
            with pytest.raises(NoRoutableToolError) as caught:
                await client.discover(op, required=True)
        assert caught.value.explanation is not None
        assert caught.value.explanation["declared"] == 2
        assert {t["tool_id"] for t in caught.value.explanation["tools"]} == set(reasons)


async def test_get_tool_shows_heartbeat_freshness_and_check_status(
    explaining: Server, uid: str
) -> None:
    token = bearer(await explaining.token("write"))
    async with httpx.AsyncClient(base_url=explaining.base_url, timeout=10) as http:
        plain = _tool(f"plain-{uid}", f"op-{uid}")
        assert (await http.put(f"/v1/tools/plain-{uid}", json=plain, headers=token)).is_success
        health = (await http.get(f"/v1/tools/plain-{uid}")).json()["health"]
        assert health["status"] == "healthy" and health["heartbeat_fresh"] is True
        assert health["check_status"] == "unknown" and health["check_since"] is None

        sick = _tool(f"ill-{uid}", f"op-{uid}", health_endpoint=f"http://127.0.0.1:{free_port()}/")
        assert (await http.put(f"/v1/tools/ill-{uid}", json=sick, headers=token)).is_success
        for _ in range(100):
            health = (await http.get(f"/v1/tools/ill-{uid}")).json()["health"]
            if health["check_status"] == "critical":
                break
            await asyncio.sleep(0.1)
        assert health["status"] == "critical" and health["check_since"] is not None
