"""The read tools through the official SDK's client over Streamable HTTP, on both protocol eras,
against a real ``toolreg serve``: the tool list, ``search_tools`` with each filter,
``get_tool``, and ``discover`` with and without a routable tool."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.mcp.helpers import failed, mcp_client, ok, refused, register, routable
from tests.support import Server

MODES = ["auto", "legacy"]
COMPACT = {"tool_id", "node_type", "operations", "health", "endpoints"}


def _tool(tool_id: str, operation: str, url: str = "http://h:1/x", **extra: Any) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "compute",
        "capabilities": {"operations": [operation], "formats": ["json", "yaml"]},
        "endpoints": {operation: url},
        "metadata": {"version": "1.0.0"},
        **extra,
    }


async def _ids(client: Any, **arguments: Any) -> list[str]:
    answer = ok(await client.call_tool("search_tools", arguments))
    return [t["tool_id"] for t in answer["tools"]]


async def test_the_server_offers_four_tools_with_schemas(registry: Server) -> None:
    async with mcp_client(registry) as client:
        assert client.server_info is not None and client.server_info.name == "toolreg"
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"search_tools", "get_tool", "discover", "call_tool"}
    for name in ("search_tools", "get_tool", "discover"):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is True
    call = tools["call_tool"]
    assert call.annotations is not None and call.annotations.read_only_hint is False
    assert call.input_schema["required"] == ["operation", "payload"]
    assert set(call.input_schema["properties"]) == {
        "operation", "payload", "idempotent", "timeout_seconds"
    }  # fmt: skip
    assert call.input_schema["properties"]["idempotent"]["default"] is False
    assert call.output_schema is None  # the tool's own JSON, whatever its shape
    search = tools["search_tools"].input_schema
    assert set(search["properties"]) == {
        "operation", "node_type", "capabilities", "where", "healthy_only", "limit", "cursor"
    }  # fmt: skip
    assert search.get("required", []) == []
    assert search["properties"]["healthy_only"]["default"] is True
    assert search["properties"]["limit"]["default"] == 20
    assert tools["get_tool"].input_schema["required"] == ["tool_id"]
    assert tools["discover"].input_schema["required"] == ["operation"]
    compact = tools["search_tools"].output_schema
    assert compact is not None and set(compact["$defs"]["CompactTool"]["properties"]) == COMPACT
    for tool in tools.values():
        assert (
            tool.description and "``" not in tool.description and "\n    " not in tool.description
        )


@pytest.mark.parametrize("mode", MODES)
async def test_search_tools_with_each_filter(registry: Server, uid: str, mode: str) -> None:
    token = await registry.token("write")
    op = f"op-{uid}"
    for n in range(3):
        capabilities = {
            "operations": [op, "shared"],
            "formats": ["json", "yaml"] if n else ["json"],
            "max_file_size": n * 10**7,
        }
        await register(registry, token, _tool(f"s-{uid}-{n}", op, capabilities=capabilities))
    other = _tool(f"s-{uid}-other", f"other-{uid}", node_type="effect")
    other["capabilities"]["tag"] = uid
    await register(registry, token, other)
    async with mcp_client(registry, mode=mode) as client:
        first = ok(await client.call_tool("search_tools", {"operation": op, "limit": 2}))
        assert [t["tool_id"] for t in first["tools"]] == [f"s-{uid}-0", f"s-{uid}-1"]
        assert first["tools"][0] == {
            "tool_id": f"s-{uid}-0",
            "node_type": "compute",
            "operations": [op, "shared"],
            "health": "healthy",
            "endpoints": {op: "http://h:1/x"},
        }
        rest = ok(
            await client.call_tool(
                "search_tools", {"operation": op, "cursor": first["next_cursor"]}
            )
        )
        assert [t["tool_id"] for t in rest["tools"]] == [f"s-{uid}-2"]
        assert rest["next_cursor"] is None

        # Each filter alone, then together; all combine with AND.
        assert await _ids(client, capabilities={"tag": uid}) == [f"s-{uid}-other"]
        effects = ok(await client.call_tool("search_tools", {"node_type": "EFFECT", "limit": 100}))
        assert f"s-{uid}-other" in [t["tool_id"] for t in effects["tools"]]
        assert {t["node_type"] for t in effects["tools"]} == {"effect"}
        assert await _ids(client, operation=op, capabilities={"formats": ["yaml"]}) == [
            f"s-{uid}-1", f"s-{uid}-2"
        ]  # fmt: skip
        assert await _ids(client, operation=op, where="$.max_file_size >= 15000000") == [
            f"s-{uid}-2"
        ]
        # operation adds to the operations capabilities ask for.
        assert await _ids(client, operation=op, capabilities={"operations": ["shared"]}) == [
            f"s-{uid}-{n}" for n in range(3)
        ]
        assert await _ids(client, operation=op, node_type="effect") == []

        bad = failed(await client.call_tool("search_tools", {"node_type": "gadget"}))
        assert bad["kind"] == "invalid_arguments" and bad["retryable"] is False
        assert [f["field"] for f in bad["fields"]] == ["node_type"]
        path = failed(await client.call_tool("search_tools", {"where": "$.(("}))
        assert path["kind"] == "invalid_arguments" and path["fields"][0]["field"] == "where"
        mixed = failed(
            await client.call_tool(
                "search_tools", {"operation": op, "capabilities": {"operations": "x"}}
            )
        )
        assert mixed["fields"][0]["field"] == "capabilities.operations"
        cursor = failed(await client.call_tool("search_tools", {"cursor": "%%%"}))
        assert cursor["kind"] == "invalid_arguments"
        # Checked by the SDK against the input schema, before the registry sees it.
        assert "limit" in refused(await client.call_tool("search_tools", {"limit": 0}))
        assert "limit" in refused(await client.call_tool("search_tools", {"limit": 101}))


async def test_search_tools_leaves_out_stale_tools_unless_asked(expiring: Server, uid: str) -> None:
    token = await expiring.token("write")
    op = f"lapse-{uid}"
    await register(expiring, token, _tool(f"lapse-{uid}", op))
    async with mcp_client(expiring) as client:
        assert await _ids(client, operation=op) == [f"lapse-{uid}"]
        for _ in range(100):  # TTL 2 s, swept every 0.3 s
            every = ok(
                await client.call_tool("search_tools", {"operation": op, "healthy_only": False})
            )
            if every["tools"][0]["health"] == "stale":
                break
            await asyncio.sleep(0.1)
        assert every["tools"][0]["health"] == "stale"
        assert await _ids(client, operation=op) == []
        assert await _ids(client, operation=op, healthy_only=True) == []


@pytest.mark.parametrize("mode", MODES)
async def test_get_tool_reads_one_and_names_a_missing_one(
    registry: Server, uid: str, mode: str
) -> None:
    token = await registry.token("write")
    await register(registry, token, _tool(f"get-{uid}:a@b", "g", "http://h:1/g"))
    async with mcp_client(registry, mode=mode) as client:
        tool = ok(await client.call_tool("get_tool", {"tool_id": f"get-{uid}:a@b"}))
        assert tool["tool_id"] == f"get-{uid}:a@b" and tool["node_type"] == "compute"
        assert tool["endpoints"] == {"g": "http://h:1/g"}
        assert tool["metadata"] == {"version": "1.0.0"} and tool["last_heartbeat"]
        assert tool["uri"] == f"toolreg://tools/get-{uid}:a@b"
        assert tool["health"]["status"] == "healthy" and tool["health"]["heartbeat_fresh"]
        assert tool["health"]["check_status"] == "unknown"  # it has no health endpoint
        # The same registration and health as the HTTP API gives.
        async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
            rest = (await http.get(f"/v1/tools/get-{uid}:a@b")).json()
        assert {k: v for k, v in tool.items() if k != "uri"} == rest
        missing = failed(await client.call_tool("get_tool", {"tool_id": f"nope-{uid}"}))
        assert missing["kind"] == "not_found" and missing["tool_id"] == f"nope-{uid}"
        assert missing["message"] == f"Tool not found: tool_id 'nope-{uid}' is not registered"
        assert "search_tools" in missing["hint"]


@pytest.mark.parametrize("mode", MODES)
async def test_discover_names_the_tool_and_explains_the_others(
    registry: Server, uid: str, mode: str
) -> None:
    token = await registry.token("write")
    op = f"disc-{uid}"
    await register(registry, token, _tool(f"{op}-live", op))
    await register(registry, token, {**_tool(f"{op}-bare", op), "endpoints": {}})
    await routable(registry, op, 1)
    async with mcp_client(registry, mode=mode) as client:
        found = ok(await client.call_tool("discover", {"operation": op}))
        assert found["operation"] == op and found["routable"] is True
        assert found["tool"]["tool_id"] == f"{op}-live"
        assert found["tool"]["endpoints"] == {op: "http://h:1/x"}
        explanation = found["explanation"]
        assert explanation["declared"] == 2 and explanation["routable"] == 1
        reasons = {t["tool_id"]: t["reason"] for t in explanation["tools"]}
        assert reasons == {f"{op}-bare": "no_endpoint", f"{op}-live": "routable"}

        nobody = ok(await client.call_tool("discover", {"operation": f"none-{uid}"}))
        assert nobody["routable"] is False and nobody["tool"] is None
        assert nobody["explanation"]["declared"] == 0
        assert "no registered tool lists it" in nobody["explanation"]["summary"]

        assert "operation" in refused(await client.call_tool("discover", {"operation": "a b"}))


async def test_discover_without_a_routable_tool_says_why_like_the_http_api(
    expiring: Server, uid: str
) -> None:
    token = await expiring.token("write")
    op = f"gone-{uid}"
    await register(expiring, token, _tool(f"{op}-1", op))
    async with mcp_client(expiring) as client:
        for _ in range(100):  # its heartbeat lapses past the 2 s TTL
            answer = ok(await client.call_tool("discover", {"operation": op}))
            if answer["explanation"]["tools"][0]["reason"] == "stale":
                break
            await asyncio.sleep(0.1)
    assert answer["routable"] is False and answer["tool"] is None
    explanation = answer["explanation"]
    assert explanation["declared"] == 1 and explanation["routable"] == 0
    assert explanation["tools"][0]["since"]
    async with httpx.AsyncClient(base_url=expiring.base_url, timeout=10) as http:
        response = await http.get(f"/v1/discover/{op}")
    assert response.status_code == 404
    problem = response.json()
    assert problem["detail"].endswith(f"({explanation['summary']})")
    assert {k: problem[k] for k in ("declared", "routable", "tools")} == {
        k: explanation[k] for k in ("declared", "routable", "tools")
    }
