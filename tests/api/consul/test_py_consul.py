"""py-consul, unchanged but for the address, against a real ``toolreg serve``.

The catalog, health with ``passing`` and tags, and blocking queries woken by a
registration, a heartbeat expiry and a deletion, and at ``wait`` otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import consul
import httpx
import pytest

from tests.api.consul.helpers import until_listed
from tests.support import Server, bearer, running_server

# Short TTL and sweep, so that a heartbeat expiry becomes a feed event quickly.
ENV = {
    "TOOLREG_TTL_SECONDS": "2",
    "TOOLREG_RETENTION_SECONDS": "3600",
    "TOOLREG_REAP_INTERVAL_SECONDS": "0.3",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "3600",
    "TOOLREG_NODE_NAME": "registry-1",
    "TOOLREG_DATACENTER": "dc-test",
}


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env=ENV) as running:
        yield running


def tool(tool_id: str, operation: str, port: int, **metadata: Any) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "compute",
        "capabilities": {"operations": [operation, "undeclared-endpoint"]},
        "endpoints": {operation: f"http://10.1.2.3:{port}/api/{operation}"},
        "metadata": {"version": "1.2.0", "replicas": 3, "gpu": False, "nested": {"a": 1}}
        | metadata,
    }


def client(server: Server) -> consul.Consul:
    host, port = server.base_url.removeprefix("http://").split(":")
    return consul.Consul(host=host, port=int(port))


async def test_catalog_and_health_as_py_consul_reads_them(registry: Server, uid: str) -> None:
    token = bearer(await registry.token("write"))
    service = f"embed-{uid}"
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for index, tags in enumerate((["blue"], ["green", "blue"])):
            tool_id = f"{service}-{index}"
            response = await http.put(
                f"/v1/tools/{tool_id}",
                json=tool(tool_id, service, 9000 + index, tags=tags),
                headers=token,
            )
            assert response.status_code == 201, response.text
    await until_listed(registry.base_url, service, 2)
    c = client(registry)
    agent = await asyncio.to_thread(c.agent.self)
    assert agent["Config"]["Datacenter"] == "dc-test"
    assert agent["Config"]["NodeName"] == "registry-1"

    index, services = await asyncio.to_thread(c.catalog.services)
    assert int(index) >= 1
    assert sorted(services[service]) == ["blue", "compute", "green"]
    assert "undeclared-endpoint" not in services  # no endpoint, no service
    assert "node-type:compute" in services

    index, entries = await asyncio.to_thread(c.catalog.service, service)
    assert [e["ServiceID"] for e in entries] == [f"{service}-0", f"{service}-1"]
    first = entries[0]
    assert first["ServiceAddress"] == "10.1.2.3" and first["ServicePort"] == 9000
    assert first["Node"] == "registry-1" and first["Datacenter"] == "dc-test"
    assert first["ServiceMeta"] == {
        "version": "1.2.0",
        "replicas": "3",
        "gpu": "false",
        "tool_id": f"{service}-0",
        "node_type": "compute",
        "endpoint_path": f"/api/{service}",
        "endpoint_scheme": "http",
    }
    assert all(isinstance(v, str) for e in entries for v in e["ServiceMeta"].values())
    assert first["CreateIndex"] <= first["ModifyIndex"] <= int(index)

    index, healthy = await asyncio.to_thread(c.health.service, service, passing=True, tag="green")
    assert [h["Service"]["ID"] for h in healthy] == [f"{service}-1"]
    checks = healthy[0]["Checks"]
    assert [(ch["CheckID"], ch["Status"]) for ch in checks] == [
        (f"service:{service}-1:heartbeat", "passing")
    ]
    assert healthy[0]["Node"]["Address"] == "10.1.2.3"

    index, missing = await asyncio.to_thread(c.health.service, f"nothing-{uid}")
    assert missing == [] and int(index) >= 1


async def test_blocking_queries_wake_on_changes_and_time_out_otherwise(
    registry: Server, uid: str
) -> None:
    token = bearer(await registry.token("write"))
    service = f"block-{uid}"
    c = client(registry)
    index, entries = await asyncio.to_thread(c.health.service, service, passing=True)
    assert entries == []

    async def blocked(since: str, wait: str = "10s") -> tuple[str, list[Any], float]:
        started = time.monotonic()
        new_index, found = await asyncio.to_thread(
            c.health.service, service, passing=True, index=since, wait=wait
        )
        return new_index, found, time.monotonic() - started

    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        # A registration wakes it.
        waiting = asyncio.create_task(blocked(index))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        tool_id = f"{service}-a"
        body = tool(tool_id, service, 9100)
        assert (await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)).is_success
        index, found, took = await waiting
        assert [h["Service"]["ID"] for h in found] == [tool_id]
        assert took < 9  # woken by the change, not by the wait

        # The heartbeat expiry (TTL 2 s, swept every 0.3 s) wakes it: not passing any more.
        index, found, took = await blocked(index)
        assert found == []
        assert took < 9

        # Deleting wakes a query that does not filter on passing, too.
        index, listed = await asyncio.to_thread(c.health.service, service)
        assert [h["Checks"][0]["Status"] for h in listed] == ["critical"]
        unfiltered = asyncio.create_task(
            asyncio.to_thread(c.health.service, service, index=index, wait="10s")
        )
        await asyncio.sleep(0.5)
        assert (await http.delete(f"/v1/tools/{tool_id}", headers=token)).status_code == 204
        index, listed = await unfiltered
        assert listed == []

        # Nothing changes: it answers at `wait`, with the same index.
        same, listed, took = await blocked(index, wait="1s")
        assert same == index and listed == []
        assert took >= 0.9


async def test_consul_headers_and_bad_parameters(registry: Server) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        response = await http.get("/v1/catalog/services")
        assert response.headers["x-consul-knownleader"] == "true"
        assert response.headers["x-consul-lastcontact"] == "0"
        assert int(response.headers["x-consul-index"]) >= 1
        assert (await http.get("/v1/status/leader")).json() == "127.0.0.1:8300"
        bad_wait = await http.get("/v1/health/service/x", params={"index": 1, "wait": "soon"})
        assert bad_wait.status_code == 422 and "wait" in bad_wait.text
        bad_filter = await http.get(
            "/v1/health/service/x", params={"filter": 'Service.Meta.v matches "x"'}
        )
        assert bad_filter.status_code == 422 and "matches" in bad_filter.text
        # A client whose index is ahead of ours is answered at once (it then resets).
        ahead = await http.get(
            "/v1/health/service/x", params={"index": 2**62, "wait": "10s"}, timeout=5
        )
        assert ahead.status_code == 200
