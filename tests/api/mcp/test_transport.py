"""``/mcp`` over HTTP: stateless POST only, the DNS-rebinding checks, tokens, and listen streams
that end on shutdown and on revocation; the rest of the app is untouched by the mount."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from mcp import MCPError
from mcp.client.subscriptions import Subscription, SubscriptionLost

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService
from tests.api.mcp.helpers import ENV, mcp_client, register, routable
from tests.services.discovery.tool_server import ToolServer
from tests.support import (
    Server,
    base_settings,
    bearer,
    metric_value,
    operation_body,
    running_server,
    start_server,
    stop_server,
)

MODERN = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/list",
}
TOOLS_LIST: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


async def _drain(subscription: Subscription, timeout: float) -> None:
    """Read the stream until it ends."""
    async with asyncio.timeout(timeout):
        async for _ in subscription:
            pass


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_a_plain_post_lists_the_tools_in_json(registry: Server) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=MODERN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    names = {t["name"] for t in response.json()["result"]["tools"]}
    assert names == {"search_tools", "get_tool", "discover", "call_tool"}
    assert "mcp-session-id" not in response.headers  # stateless
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        metrics = (await http.get("/metrics")).text
    assert 'route="/mcp",status="200"' in metrics  # labelled by its route, like the others


async def test_get_and_delete_are_405_there_is_no_session_or_stream(registry: Server) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for method in ("GET", "DELETE"):
            response = await http.request(
                method, "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": "x"}
            )
            _problem(response, 405)
            assert response.headers["allow"] == "POST"
        # The other routes still answer as before: the MCP route swallowed nothing.
        _problem(await http.get("/mcp/x"), 404)
        _problem(await http.get("/nowhere"), 404)
        assert (await http.get("/health")).status_code == 200


async def test_foreign_hosts_and_origins_are_refused(registry: Server) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        rebound = await http.post("/mcp", json=TOOLS_LIST, headers={**MODERN, "Host": "evil.test"})
        assert rebound.status_code == 421
        page = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MODERN, "Origin": "http://evil.test"}
        )
        assert page.status_code == 403
        local = await http.post(
            "/mcp",
            json=TOOLS_LIST,
            headers={**MODERN, "Host": "localhost", "Origin": "http://localhost:3000"},
        )
        assert local.status_code == 200


@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        ("registry.example:*", "registry.example:8080", 200),
        ("registry.example:*", "127.0.0.1:8080", 421),
        ("*", "anything.test", 200),
    ],
)
async def test_allowed_hosts_are_configurable(
    module_db: str, allowed: str, host: str, status: int
) -> None:
    server = start_server(module_db, env={"TOOLREG_MCP_ALLOWED_HOSTS": allowed})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            response = await http.post("/mcp", json=TOOLS_LIST, headers={**MODERN, "Host": host})
        assert response.status_code == status
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def guarded(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env={**ENV, "TOOLREG_READS_REQUIRE_TOKEN": "true"}) as running:
        yield running


async def test_tokens_are_checked_like_every_other_read(guarded: Server, uid: str) -> None:
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=10) as http:
        missing = await http.post("/mcp", json=TOOLS_LIST, headers=MODERN)
        _problem(missing, 401)
        assert missing.headers["www-authenticate"] == 'Bearer realm="toolreg"'
        wrong = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MODERN, **bearer("trg_" + "x" * 43)}
        )
        _problem(wrong, 401)
        basic = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MODERN, "Authorization": "Basic dTpw"}
        )
        _problem(basic, 401)
        for path in ("/v0.1/servers", f"/v0.1/servers/a%2F{uid}/versions"):
            _problem(await http.get(path), 401)
    reader = await guarded.token("read")
    async with mcp_client(guarded, reader) as client:
        assert len((await client.list_tools()).tools) == 4
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=10) as http:
        assert (await http.get("/v0.1/servers", headers=bearer(reader))).status_code == 200


async def test_a_listen_stream_ends_when_its_token_is_revoked(guarded: Server, uid: str) -> None:
    name = f"listener-{uid}"
    secret = await guarded.token("read", name=name)
    async with (
        mcp_client(guarded, secret) as client,
        client.listen(resources_list_changed=True) as subscription,
    ):
        async with PostgresClient(base_settings(pool_max_size=1), dsn=guarded.dsn) as db:
            assert await TokenService(db).revoke(name)
        with pytest.raises(SubscriptionLost):
            await _drain(subscription, 10)
        # Its next request is refused: the transport reports the 401.
        with pytest.raises(MCPError):
            await client.list_tools()


async def test_sigterm_ends_listen_streams_and_the_server_stops(module_db: str) -> None:
    server = start_server(module_db, env=ENV)
    loop = asyncio.get_running_loop()
    try:
        async with (
            mcp_client(server) as client,
            client.listen(resources_list_changed=True) as subscription,
        ):
            started = loop.time()
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(SubscriptionLost):
                await _drain(subscription, 20)
            assert loop.time() - started < 10
        code = await asyncio.to_thread(server.process.wait, 30)
        assert code in (0, -signal.SIGTERM)
        assert loop.time() - started < 10
    finally:
        stop_server(server)


async def test_a_refused_token_is_401_where_reads_are_open_too(registry: Server, uid: str) -> None:
    """Where reads are open the token is checked while the SDK reads the request; a refused
    one still gets the 401, for a read as for ``call_tool``, and no tool is called."""
    token = await registry.token("write")
    wrong = bearer("trg_" + "x" * 43)
    op = f"refused-{uid}"
    call = {**TOOLS_LIST, "method": "tools/call",
            "params": {**TOOLS_LIST["params"], "name": "call_tool",
                       "arguments": {"operation": op, "payload": {}}}}  # fmt: skip
    async with (
        ToolServer("refused") as tool,
        httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http,
    ):
        target = {"operations": [op]}
        registration = {"tool_id": op, "node_type": "effect", "capabilities": target,
                        "endpoints": {op: tool.url("/")}}  # fmt: skip
        await register(registry, token, registration)
        for body, method in ((TOOLS_LIST, "tools/list"), (call, "tools/call")):
            headers = {**MODERN, "Mcp-Method": method, **wrong}
            if method == "tools/call":
                headers["Mcp-Name"] = "call_tool"
            refused = await http.post("/mcp", json=body, headers=headers)
            _problem(refused, 401)
            assert refused.headers["www-authenticate"] == 'Bearer realm="toolreg"'
        basic = await http.post("/mcp", json=TOOLS_LIST, headers={**MODERN, "Authorization": "x"})
        _problem(basic, 401)
        assert (await http.post("/mcp", json=TOOLS_LIST, headers=MODERN)).status_code == 200
    assert tool.requests == []


async def test_a_call_whose_client_left_stops_waiting_on_its_tool(
    registry: Server, uid: str
) -> None:
    """A client that hangs up before the answer: the registry gives up its call to the tool
    at once, instead of holding it (and the tool's connection) for ``timeout_seconds``."""
    called, left = asyncio.Event(), asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        called.set()
        while await reader.read(65536):  # the request, then EOF when the caller hangs up
            pass
        left.set()
        writer.close()

    tool = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    operation = f"hang-{uid}"
    url = f"http://127.0.0.1:{tool.sockets[0].getsockname()[1]}/hang"
    token = await registry.token("write")
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "call_tool",
            "arguments": {"operation": operation, "payload": {}, "timeout_seconds": 3600},
        },
    }
    body = orjson.dumps(call)
    host, port = registry.base_url.removeprefix("http://").split(":")
    async with tool:
        await register(registry, token, operation_body(f"{operation}-1", operation, url))
        await routable(registry, operation, 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
            b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            b"MCP-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\n\r\n%s"
            % (f"{host}:{port}".encode(), token.encode(), len(body), body)
        )
        await writer.drain()
        async with asyncio.timeout(10):
            await called.wait()
        writer.close()  # gone before the answer
        async with asyncio.timeout(5):
            await left.wait()
    # Counted as the client's doing (nginx's 499), not as the server failing.
    sample = 'toolreg_http_requests_total{method="POST",route="/mcp",status="499"}'
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for _ in range(100):
            if metric_value((await http.get("/metrics")).text, sample):
                break
            await asyncio.sleep(0.05)
        assert metric_value((await http.get("/metrics")).text, sample) == 1
