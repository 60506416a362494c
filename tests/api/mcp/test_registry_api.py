"""``/v0.1``: the MCP registry's read API, field by field against its openapi.yaml and the
server.json schema (2025-12-11), on a real server."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from tests.api.conftest import Server, bearer
from tests.api.mcp.conftest import register

NAME = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
URL = re.compile(r"^https?://[^\s]+$")
OFFICIAL = "io.modelcontextprotocol.registry/official"
SERVER_FIELDS = {"$schema", "name", "description", "version", "title", "websiteUrl",
                 "repository", "remotes", "packages", "icons", "_meta"}  # fmt: skip


def _mcp_tool(
    tool_id: str, url: str = "http://10.0.0.1:9000/mcp", **metadata: Any
) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": ["ask"]},
        "endpoints": {"mcp": url, "ask": "http://10.0.0.1:9000/ask"},
        "metadata": metadata,
    }


def check_entry(entry: dict[str, Any]) -> None:
    """What the MCP registry's schemas require of one ServerResponse."""
    assert set(entry) == {"server", "_meta"}
    server = entry["server"]
    assert set(server) <= SERVER_FIELDS
    assert NAME.match(server["name"]) and 3 <= len(server["name"]) <= 200
    assert 1 <= len(server["description"]) <= 100
    assert 1 <= len(server["version"]) <= 255 and server["version"] != "latest"
    assert server["$schema"].endswith("/2025-12-11/server.schema.json")
    for remote in server["remotes"]:
        assert set(remote) == {"type", "url"}
        assert remote["type"] in ("streamable-http", "sse") and URL.match(remote["url"])
    official = entry["_meta"][OFFICIAL]
    assert set(official) <= {"status", "statusMessage", "statusChangedAt", "publishedAt",
                             "updatedAt", "isLatest"}  # fmt: skip
    assert official["status"] in ("active", "deprecated", "deleted")
    assert isinstance(official["isLatest"], bool)
    for stamp in ("publishedAt", "updatedAt"):
        assert datetime.fromisoformat(official[stamp]).tzinfo is not None


async def _servers(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await http.get("/v0.1/servers", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    for entry in body["servers"]:
        check_entry(entry)
    assert body["metadata"]["count"] == len(body["servers"])
    return body


async def test_mcp_tools_are_servers_with_versions_and_replicas(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    name = f"com.example/weather-{uid}"
    long = "Weather " * 30
    replica = "https://w1b.example/mcp"
    repository = {"url": "https://github.com/e/w", "source": "github"}
    site = "https://example.com/weather"
    for tool in (
        _mcp_tool(f"w1-{uid}", mcp_name=name, version="1.2.0", description=long, title="Weather"),
        _mcp_tool(f"w1b-{uid}", replica, mcp_name=name, version="1.2.0"),
        _mcp_tool(f"w2-{uid}", mcp_name=name, version="1.10.0-rc.1", website_url=site,
                  repository=repository),
    ):  # fmt: skip
        await register(registry, token, tool)
    await register(registry, token, _mcp_tool(f"w3-{uid}", mcp_name=name, version="1.9.9"))
    plain = _mcp_tool(f"plain-{uid}")
    plain["endpoints"] = {"ask": "http://10.0.0.1:9000/ask"}  # no MCP endpoint: not a server
    await register(registry, token, plain)
    encoded = quote(name, safe="")

    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        versions = (await http.get(f"/v0.1/servers/{encoded}/versions")).json()
        for entry in versions["servers"]:
            check_entry(entry)
        # Newest first by semantic version: 1.10.0-rc.1 > 1.9.9 > 1.2.0.
        assert [e["server"]["version"] for e in versions["servers"]] == [
            "1.10.0-rc.1", "1.9.9", "1.2.0"
        ]  # fmt: skip
        assert [e["_meta"][OFFICIAL]["isLatest"] for e in versions["servers"]] == [
            True, False, False
        ]  # fmt: skip

        one = (await http.get(f"/v0.1/servers/{encoded}/versions/1.2.0")).json()
        check_entry(one)
        server = one["server"]
        assert server["name"] == name and server["title"] == "Weather"
        assert (
            server["description"].startswith("Weather Weather")
            and len(server["description"]) == 100
        )
        # Two replicas of 1.2.0: one entry, both remotes, in tool_id order.
        assert server["remotes"] == [
            {"type": "streamable-http", "url": "http://10.0.0.1:9000/mcp"},
            {"type": "streamable-http", "url": "https://w1b.example/mcp"},
        ]
        toolreg = one["_meta"]["dev.omninode/toolreg"]
        assert [i["toolId"] for i in toolreg["instances"]] == [f"w1-{uid}", f"w1b-{uid}"]
        assert toolreg["health"] == "healthy"
        assert {i["health"] for i in toolreg["instances"]} == {"healthy"}

        latest = (await http.get(f"/v0.1/servers/{encoded}/versions/latest")).json()
        assert latest["server"]["version"] == "1.10.0-rc.1"
        assert latest["server"]["websiteUrl"] == "https://example.com/weather"
        assert latest["server"]["repository"] == {
            "url": "https://github.com/e/w",
            "source": "github",
        }

        # Listing: search, version=latest, and the tool without an MCP endpoint left out.
        found = await _servers(http, search=f"WEATHER-{uid}")
        assert {e["server"]["name"] for e in found["servers"]} == {name}
        assert len(found["servers"]) == 3
        only_latest = await _servers(http, search=uid, version="latest")
        assert [e["server"]["version"] for e in only_latest["servers"]] == ["1.10.0-rc.1"]
        exact = await _servers(http, search=uid, version="1.9.9")
        assert [e["server"]["version"] for e in exact["servers"]] == ["1.9.9"]
        everything = await _servers(http, limit=100)
        assert not any(f"plain-{uid}" in e["server"]["name"] for e in everything["servers"])


async def test_names_are_derived_from_tool_ids_without_a_declared_one(
    registry: Server, uid: str
) -> None:
    token = await registry.token("write")
    await register(registry, token, _mcp_tool(f"odd:{uid}@x", version="^1.0", mcp_name="no name"))
    sse = _mcp_tool(f"sse-{uid}")
    sse["endpoints"] = {"mcp-sse": "http://10.0.0.2/sse"}
    await register(registry, token, sse)
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        entry = (await http.get(f"/v0.1/servers/dev.omninode%2Fodd-{uid}-x/versions/latest")).json()
        check_entry(entry)
        # A range is not a version; no description: one naming the node type and tool.
        assert entry["server"]["version"] == "0.0.0"
        assert entry["server"]["description"] == f"effect tool odd:{uid}@x"
        other = (await http.get(f"/v0.1/servers/dev.omninode%2Fsse-{uid}/versions/0.0.0")).json()
        assert other["server"]["remotes"] == [{"type": "sse", "url": "http://10.0.0.2/sse"}]


async def test_unknown_servers_and_versions_are_404_with_an_error(registry: Server) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for path in (
            "/v0.1/servers/com.example%2Fnothing/versions",
            "/v0.1/servers/com.example%2Fnothing/versions/1.0.0",
            "/v0.1/servers/com.example%2Fnothing/versions/latest",
        ):
            response = await http.get(path)
            assert response.status_code == 404
            assert response.json() == {"error": "Server not found"}
        assert (await http.get("/v0.1/servers", params={"limit": 0})).status_code == 422
        assert (await http.get("/v0.1/servers", params={"limit": 101})).status_code == 422
        bad = await http.get("/v0.1/servers", params={"cursor": "%%%"})
        assert bad.status_code == 422 and "cursor" in bad.text


async def test_pages_walk_every_server_once_and_updated_since_filters(
    registry: Server, uid: str
) -> None:
    token = await registry.token("write")
    for n in range(7):
        await register(registry, token, _mcp_tool(f"pg{n}-{uid}", mcp_name=f"org.pg/{uid}-{n}"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        names: list[str] = []
        params: dict[str, Any] = {"limit": 3, "search": f"org.pg/{uid}"}
        while True:
            page = await _servers(http, **params)
            names += [e["server"]["name"] for e in page["servers"]]
            cursor = page["metadata"].get("nextCursor")
            if cursor is None:
                break
            params["cursor"] = cursor
        assert names == [f"org.pg/{uid}-{n}" for n in range(7)]

        mark = datetime.now().astimezone() - timedelta(seconds=1)
        await asyncio.sleep(1.1)
        again = _mcp_tool(f"pg3-{uid}", mcp_name=f"org.pg/{uid}-3", version="2.0.0")
        await register(registry, token, again)
        since = (mark + timedelta(seconds=1)).isoformat()
        recent = await _servers(http, search=f"org.pg/{uid}", updated_since=since)
        assert [(e["server"]["name"], e["server"]["version"]) for e in recent["servers"]] == [
            (f"org.pg/{uid}-3", "2.0.0")
        ]


async def test_a_heartbeat_lapse_shows_in_the_instances_health(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    await register(registry, token, _mcp_tool(f"hb-{uid}", mcp_name=f"org.hb/{uid}"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        path = f"/v0.1/servers/org.hb%2F{uid}/versions/latest"
        health = None
        for _ in range(100):  # TTL 2 s, sweep every 0.3 s
            health = (await http.get(path)).json()["_meta"]["dev.omninode/toolreg"]["health"]
            if health == "stale":
                break
            await asyncio.sleep(0.1)
        assert health == "stale"
        beat = await http.post(f"/v1/tools/hb-{uid}/heartbeat", headers=bearer(token))
        assert beat.status_code == 204
