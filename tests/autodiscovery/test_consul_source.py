"""The Consul source: Consul's documented JSON, and a federation of two real registries.

No Consul server can be installed here, so the source is tested (1) against a
loopback HTTP server that answers with the JSON shapes of Consul's API
documentation, and (2) against a second ``toolreg serve``: registry B
follows registry A's Consul-compatible catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from omninode_bridge.autodiscovery import ConsulSource, SourceUnavailableError
from omninode_bridge.autodiscovery.consul import parse_address
from omninode_bridge.errors import ConfigurationError
from tests.support import (
    Server,
    bearer,
    running_server,
    start_server,
    stop_server,
    temporary_database,
)

# From Consul's API docs (health/service and catalog/services), trimmed.
DOCUMENTED_SERVICES = {"redis": ["primary", "v1"], "web": []}
DOCUMENTED_HEALTH = {
    "redis": [
        {
            "Node": {"ID": "40e4a748", "Node": "foobar", "Address": "10.1.10.12",
                     "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}},
            "Service": {"ID": "redis1", "Service": "redis", "Tags": ["primary", "v1"],
                        "Address": "10.1.10.12", "Meta": {"redis_version": "4.0"}, "Port": 8000,
                        "Weights": {"Passing": 10, "Warning": 1}},
            "Checks": [{"Node": "foobar", "CheckID": "service:redis1", "Name": "Service check",
                        "Status": "passing", "ServiceID": "redis1", "ServiceName": "redis"}],
        },
        {
            "Node": {"ID": "50e4a748", "Node": "other", "Address": "10.1.10.13",
                     "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}},
            "Service": {"ID": "redis2", "Service": "redis", "Tags": [], "Address": "",
                        "Meta": {}, "Port": 8001},
            "Checks": [],
        },
    ],
    "web": [
        {
            "Node": {"Node": "web-node", "Address": "10.1.10.20"},
            "Service": {"ID": "bad id with spaces", "Service": "web", "Tags": [],
                        "Address": "10.1.10.20", "Meta": {}, "Port": 80},
            "Checks": [],
        }
    ],
}  # fmt: skip


@contextlib.asynccontextmanager
async def documented_consul(index: int = 42) -> AsyncIterator[str]:
    """A loopback HTTP server answering Consul's documented JSON, with X-Consul-Index."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = request.split(" ", 2)[1].split("?", 1)[0]
        body: Any = None
        if path == "/v1/catalog/services":
            body = DOCUMENTED_SERVICES
        elif path.startswith("/v1/health/service/"):
            body = DOCUMENTED_HEALTH.get(path.rsplit("/", 1)[1], [])
        elif path == "/v1/agent/self":
            body = {"Config": {"Datacenter": "dc1"}}
        payload = orjson.dumps(body)
        status = b"200 OK" if body is not None else b"404 Not Found"
        writer.write(
            b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nX-Consul-Index: %d\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, index, len(payload), payload)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_documented_json_becomes_registrations() -> None:
    async with documented_consul() as address:
        source = ConsulSource(address)
        try:
            snapshot = await source.snapshot()
        finally:
            await source.aclose()
    assert snapshot.revision == 42
    values = {e.tool_id: orjson.loads(e.value) for e in snapshot.entries}
    assert values["redis1"] == {
        "tool_id": "redis1",
        "node_type": "effect",
        "capabilities": {"operations": ["redis"]},
        "endpoints": {"redis": "http://10.1.10.12:8000/"},
        "metadata": {"redis_version": "4.0", "tags": ["primary", "v1"]},
    }
    # No Service.Address: the node's address, as Consul clients do.
    assert values["redis2"]["endpoints"] == {"redis": "http://10.1.10.13:8001/"}
    # Passed on as it is: the bridge reports it as invalid (tool_id pattern) and skips it.
    assert "bad id with spaces" in values
    assert source.name == f"consul:{address}"


async def test_an_unreachable_consul_is_unavailable_not_empty() -> None:
    async with documented_consul() as address:
        pass  # closed: nothing listens there now
    source = ConsulSource(address, timeout=1)
    try:
        with pytest.raises(SourceUnavailableError):
            await source.snapshot()
    finally:
        await source.aclose()


def test_addresses_are_checked_and_name_the_variable() -> None:
    assert parse_address("127.0.0.1") == "http://127.0.0.1:8500"
    assert parse_address("https://consul.internal:8501") == "https://consul.internal:8501"
    with pytest.raises(ConfigurationError, match="TOOLREG_CONSUL_ADDRESS"):
        parse_address("ftp://x")


# -- a federation: registry B follows registry A's Consul-compatible catalog ------------


@pytest.fixture(scope="module")
def registry_a(module_db: str) -> Iterator[Server]:
    with running_server(module_db) as running:
        yield running


def _tool(tool_id: str, operation: str) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "compute",
        "capabilities": {"operations": [operation]},
        "endpoints": {operation: f"https://10.2.0.1:9443/v2/{operation}"},
        "metadata": {"team": "search", "tags": ["gpu"]},
    }


async def _b_tools(b: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    page = (await b.get("/v1/tools", params={"limit": 1000})).json()
    return {t["tool_id"]: t for t in page["items"]}


async def _until(b: httpx.AsyncClient, predicate: Any, seconds: float = 20) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    for _ in range(int(seconds / 0.2)):
        tools = await _b_tools(b)
        if predicate(tools):
            return tools
        await asyncio.sleep(0.2)
    raise AssertionError(f"registry B never got there: {sorted(tools)}")


async def test_registry_b_mirrors_registry_a(
    registry_a: Server, server_dsn: str, template_db: str
) -> None:

    token = bearer(await registry_a.token("write"))
    async with httpx.AsyncClient(base_url=registry_a.base_url, timeout=10) as a:
        assert (
            await a.put("/v1/tools/fed-1", json=_tool("fed-1", "rank"), headers=token)
        ).is_success
        async with temporary_database(
            server_dsn, template=template_db, prefix="toolreg_fed_b_"
        ) as b_dsn:
            b_server = start_server(
                b_dsn,
                env={"TOOLREG_CONSUL_ADDRESS": registry_a.base_url},
            )
            try:
                async with httpx.AsyncClient(base_url=b_server.base_url, timeout=10) as b:
                    tools = await _until(b, lambda t: "fed-1" in t)
                    mirrored = tools["fed-1"]
                    assert mirrored["node_type"] == "compute"
                    assert mirrored["endpoints"] == {"rank": "https://10.2.0.1:9443/v2/rank"}
                    assert mirrored["capabilities"] == {"operations": ["rank"]}
                    assert mirrored["metadata"] == {"team": "search", "tags": ["gpu"]}

                    body = _tool("fed-2", "embed")
                    assert (await a.put("/v1/tools/fed-2", json=body, headers=token)).is_success
                    await _until(b, lambda t: "fed-2" in t)
                    assert (await a.delete("/v1/tools/fed-1", headers=token)).status_code == 204
                    await _until(b, lambda t: "fed-1" not in t and "fed-2" in t)
                    found = await b.get("/v1/discover/embed")
                    assert found.status_code == 200 and found.json()["tool_id"] == "fed-2"
            finally:
                stop_server(b_server)
