"""``/v0.1``: the MCP registry's read API on a real server, every answer validated against the
official server.json schema and the openapi.yaml envelope (``registry_schema``): versions and
replicas, names, paging that walks every MCP-declaring tool once, ``search`` and
``updated_since``, a deleted tool that disappears, and a stale one that is deprecated."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from omninode_bridge.api.mcp.cursors import encode_cursor
from tests.api.mcp.helpers import register
from tests.api.mcp.registry_schema import OFFICIAL, check_entry, check_listing
from tests.support import Server, bearer

TOOLREG = "io.omninode/toolreg"


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


async def _servers(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await http.get("/v0.1/servers", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    check_listing(body)
    return body


async def _entry(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()
    check_entry(entry)
    return entry


async def _walk(http: httpx.AsyncClient, **params: Any) -> list[tuple[str, str]]:
    """Every (name, version) the listing gives, page by page."""
    seen: list[tuple[str, str]] = []
    while True:
        page = await _servers(http, **params)
        seen += [(e["server"]["name"], e["server"]["version"]) for e in page["servers"]]
        cursor = page["metadata"].get("nextCursor")
        if cursor is None:
            return seen
        params["cursor"] = cursor


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
        _mcp_tool(f"w3-{uid}", mcp_name=name, version="1.9.9"),
    ):  # fmt: skip
        await register(registry, token, tool)
    encoded = quote(name, safe="")

    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        response = await http.get(f"/v0.1/servers/{encoded}/versions")
        versions = response.json()
        check_listing(versions)
        # Newest first by semantic version: 1.10.0-rc.1 > 1.9.9 > 1.2.0.
        assert [e["server"]["version"] for e in versions["servers"]] == [
            "1.10.0-rc.1", "1.9.9", "1.2.0"
        ]  # fmt: skip
        assert [e["_meta"][OFFICIAL]["isLatest"] for e in versions["servers"]] == [
            True, False, False
        ]  # fmt: skip

        one = await _entry(http, f"/v0.1/servers/{encoded}/versions/1.2.0")
        server = one["server"]
        assert server["name"] == name and server["title"] == "Weather"
        assert server["description"].startswith("Weather Weather")
        assert len(server["description"]) == 100
        # Two replicas of 1.2.0: one entry, both remotes, in tool_id order.
        assert server["remotes"] == [
            {"type": "streamable-http", "url": "http://10.0.0.1:9000/mcp"},
            {"type": "streamable-http", "url": "https://w1b.example/mcp"},
        ]
        official = one["_meta"][OFFICIAL]
        assert official["status"] == "active" and official["isLatest"] is False
        assert official["publishedAt"] <= official["updatedAt"]
        toolreg = one["_meta"][TOOLREG]
        assert [i["toolId"] for i in toolreg["instances"]] == [f"w1-{uid}", f"w1b-{uid}"]
        assert toolreg["health"] == "healthy"

        latest = await _entry(http, f"/v0.1/servers/{encoded}/versions/latest")
        assert latest["server"]["version"] == "1.10.0-rc.1"
        assert latest["server"]["websiteUrl"] == site
        assert latest["server"]["repository"] == repository
        assert latest["_meta"][OFFICIAL]["isLatest"] is True

        only_latest = await _servers(http, search=f"weather-{uid}", version="latest")
        assert [e["server"]["version"] for e in only_latest["servers"]] == ["1.10.0-rc.1"]
        exact = await _servers(http, search=f"weather-{uid}", version="1.9.9")
        assert [e["server"]["version"] for e in exact["servers"]] == ["1.9.9"]


async def test_names_default_to_io_omninode_and_the_tool_id(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    await register(registry, token, _mcp_tool(f"odd:{uid}@x", version="^1.0", mcp_name="no name"))
    sse = _mcp_tool(f"sse-{uid}")
    sse["endpoints"] = {"mcp-sse": "http://10.0.0.2/sse"}
    await register(registry, token, sse)
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        entry = await _entry(http, f"/v0.1/servers/io.omninode%2Fodd-{uid}-x/versions/latest")
        assert entry["server"]["name"] == f"io.omninode/odd-{uid}-x"
        # A range is not a version; no description: one naming the node type and tool.
        assert entry["server"]["version"] == "0.0.0"
        assert entry["server"]["description"] == f"effect tool odd:{uid}@x"
        other = await _entry(http, f"/v0.1/servers/io.omninode%2Fsse-{uid}/versions/0.0.0")
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
        # Forged: a publication time without an offset, or one that is not a time.
        for forged in (["a/b", "1.0.0", "2026-01-01T00:00:00"], ["a/b", "1.0.0", "soon"]):
            cursor = encode_cursor(json.dumps(forged))
            bad = await http.get("/v0.1/servers", params={"cursor": cursor})
            assert bad.status_code == 422 and "cursor" in bad.text


async def test_paging_walks_every_mcp_declaring_tool_once(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    mine = {(f"io.omninode/pg{n}-{uid}", "0.0.0") for n in range(7)}
    for n in range(7):
        await register(registry, token, _mcp_tool(f"pg{n}-{uid}"))
    plain = _mcp_tool(f"plain-{uid}")
    plain["endpoints"] = {"ask": "http://10.0.0.1:9000/ask"}  # no MCP endpoint: not a server
    await register(registry, token, plain)
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        everything = await _walk(http, limit=3)
        assert len(everything) == len(set(everything))  # nothing twice
        assert mine <= set(everything)
        assert not any(f"plain-{uid}" in name for name, _ in everything)
        assert everything == sorted(everything, key=lambda e: e[0])  # by name
        # The same walk, narrowed by search: exactly these seven, in order.
        assert await _walk(http, limit=2, search=f"-{uid}") == sorted(mine)


async def test_search_matches_names_and_descriptions(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    await register(registry, token, _mcp_tool(f"s1-{uid}", mcp_name=f"org.find/Alpha-{uid}"))
    await register(
        registry, token, _mcp_tool(f"s2-{uid}", description=f"Translates text, key {uid}-beta")
    )
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        by_name = await _servers(http, search=f"alpha-{uid.upper()}")
        assert [e["server"]["name"] for e in by_name["servers"]] == [f"org.find/Alpha-{uid}"]
        by_description = await _servers(http, search=f"{uid}-BETA")
        assert [e["server"]["name"] for e in by_description["servers"]] == [f"io.omninode/s2-{uid}"]
        assert (await _servers(http, search=f"nothing-{uid}"))["servers"] == []


async def test_updated_since_gives_what_changed_after_it(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    for n in range(3):
        await register(registry, token, _mcp_tool(f"u{n}-{uid}", mcp_name=f"org.up/{uid}-{n}"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        await asyncio.sleep(0.5)
        mark = datetime.now().astimezone()
        await asyncio.sleep(0.5)
        await register(registry, token, _mcp_tool(f"u1-{uid}", mcp_name=f"org.up/{uid}-1",
                                                  version="2.0.0"))  # fmt: skip
        since = await _servers(http, search=f"org.up/{uid}", updated_since=mark.isoformat())
        assert [(e["server"]["name"], e["server"]["version"]) for e in since["servers"]] == [
            (f"org.up/{uid}-1", "2.0.0")
        ]
        for entry in since["servers"]:
            assert datetime.fromisoformat(entry["_meta"][OFFICIAL]["updatedAt"]) > mark
        earlier = (mark - timedelta(hours=1)).isoformat()
        assert len((await _servers(http, search=f"org.up/{uid}", updated_since=earlier))[
            "servers"
        ]) == 3  # fmt: skip
        later = (datetime.now().astimezone() + timedelta(hours=1)).isoformat()
        assert (await _servers(http, search=f"org.up/{uid}", updated_since=later))["servers"] == []
        bad = await http.get("/v0.1/servers", params={"updated_since": "yesterday"})
        assert bad.status_code == 422


async def test_a_deleted_tool_disappears(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    for n in range(3):
        await register(registry, token, _mcp_tool(f"d{n}-{uid}", mcp_name=f"org.del/{uid}-{n}"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        first = await _servers(http, search=f"org.del/{uid}", limit=2)
        assert [e["server"]["name"] for e in first["servers"]] == [
            f"org.del/{uid}-0", f"org.del/{uid}-1"
        ]  # fmt: skip
        deleted = await http.delete(f"/v1/tools/d1-{uid}", headers=bearer(token))
        assert deleted.status_code == 204
        path = f"/v0.1/servers/org.del%2F{uid}-1/versions"
        await _until_gone(http, path)
        assert (await http.get(path)).json() == {"error": "Server not found"}
        assert (await http.get(path + "/latest")).status_code == 404
        names = [name for name, _ in await _walk(http, search=f"org.del/{uid}")]
        assert names == [f"org.del/{uid}-0", f"org.del/{uid}-2"]
        # A cursor that points at the deleted entry still leads on to what follows it.
        rest = await _servers(http, search=f"org.del/{uid}", cursor=first["metadata"]["nextCursor"])
        assert [e["server"]["name"] for e in rest["servers"]] == [f"org.del/{uid}-2"]


async def _until_gone(http: httpx.AsyncClient, path: str) -> None:
    """Until ``path`` answers 404 (the live view follows the feed), within 5 s."""
    for _ in range(100):
        if (await http.get(path)).status_code == 404:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} still answers after 5 s")


async def test_a_cursor_at_a_deleted_version_leads_on_to_its_older_versions(
    registry: Server, uid: str
) -> None:
    """Versions of one name are ordered newest first, by semantic version or else by
    publication: once the version a cursor points at is deleted, the next page starts with
    the versions older than it, not with the next name."""
    token = await registry.token("write")
    semantic = [f"{n}.0.0" for n in (1, 2, 3)]
    published = ["r-one", "r-two", "r-three"]  # not semantic: ordered by publication
    for label, versions in (("sem", semantic), ("pub", published)):
        for version in versions:
            name = f"org.{label}/{uid}"
            await register(
                registry,
                token,
                _mcp_tool(f"{label}-{version}-{uid}", mcp_name=name, version=version),
            )
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for label, versions in (("sem", semantic), ("pub", published)):
            oldest, middle, newest = versions
            first = await _servers(http, search=f"org.{label}/{uid}", limit=2)
            assert [e["server"]["version"] for e in first["servers"]] == [newest, middle]
            deleted = await http.delete(f"/v1/tools/{label}-{middle}-{uid}", headers=bearer(token))
            assert deleted.status_code == 204
            await _until_gone(http, f"/v0.1/servers/org.{label}%2F{uid}/versions/{middle}")
            rest = await _servers(
                http, search=f"org.{label}/{uid}", cursor=first["metadata"]["nextCursor"]
            )
            assert [e["server"]["version"] for e in rest["servers"]] == [oldest]


async def test_updated_since_at_the_ends_of_time_is_an_answer(registry: Server, uid: str) -> None:
    """RFC 3339 allows offsets that put a time past datetime's range once in UTC."""
    token = await registry.token("write")
    await register(registry, token, _mcp_tool(f"end-{uid}", mcp_name=f"org.end/{uid}"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for since, found in (("9999-12-31T23:59:59-23:59", 0), ("0001-01-01T00:00:00+23:59", 1)):
            page = await _servers(http, search=f"org.end/{uid}", updated_since=since)
            assert len(page["servers"]) == found, since


async def test_a_stale_tool_is_deprecated_until_it_heartbeats(expiring: Server, uid: str) -> None:
    token = await expiring.token("write")
    await register(expiring, token, _mcp_tool(f"hb-{uid}", mcp_name=f"org.hb/{uid}"))
    path = f"/v0.1/servers/org.hb%2F{uid}/versions/latest"
    async with httpx.AsyncClient(base_url=expiring.base_url, timeout=10) as http:
        assert (await _entry(http, path))["_meta"][OFFICIAL]["status"] == "active"
        entry: dict[str, Any] = {}
        for _ in range(100):  # TTL 2 s, swept every 0.3 s
            entry = await _entry(http, path)
            if entry["_meta"][OFFICIAL]["status"] == "deprecated":
                break
            await asyncio.sleep(0.1)
        assert entry["_meta"][OFFICIAL]["status"] == "deprecated"
        assert entry["_meta"][TOOLREG]["health"] == "stale"
        listed = await _servers(http, search=f"org.hb/{uid}")
        assert listed["servers"][0]["_meta"][OFFICIAL]["status"] == "deprecated"
        beat = await http.post(f"/v1/tools/hb-{uid}/heartbeat", headers=bearer(token))
        assert beat.status_code == 204
        for _ in range(100):
            entry = await _entry(http, path)
            if entry["_meta"][OFFICIAL]["status"] == "active":
                break
            await asyncio.sleep(0.1)
        assert entry["_meta"][OFFICIAL]["status"] == "active"
