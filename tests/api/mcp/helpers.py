"""What the MCP tests share: the registry's settings, the official SDK's client on a
server's ``/mcp``, a raw listen request, checks of tool results, and registering a tool
until it is live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import orjson
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ServerEvent, Subscription
from mcp.types import CallToolResult

from tests.support import Server, bearer

# A TTL that outlasts any test on a loaded machine (tools registered at its start stay
# routable), and a quick sweep.
ENV = {
    "TOOLREG_TTL_SECONDS": "60",
    "TOOLREG_RETENTION_SECONDS": "3600",
    "TOOLREG_REAP_INTERVAL_SECONDS": "0.3",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "3600",
    "TOOLREG_STREAM_TOKEN_RECHECK_SECONDS": "0.3",
}


# The headers of a raw ``subscriptions/listen`` POST (2026-07-28 wire), for tests that hold
# the stream open themselves or look at its HTTP status.
LISTEN_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "subscriptions/listen",
}


def listen_body(notifications: dict[str, Any], client: str = "raw") -> bytes:
    """The body of a raw ``subscriptions/listen`` request for ``notifications``
    (``{"resourceSubscriptions": [...]}``, ``{"resourcesListChanged": True}``)."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "subscriptions/listen",
            "params": {
                "notifications": notifications,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": client, "version": "0"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    )


@asynccontextmanager
async def mcp_client(
    server: Server, token: str | None = None, *, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The SDK's client on the server's ``/mcp``, with a bearer token when given.

    ``mode="auto"`` speaks 2026-07-28 (no handshake); ``"legacy"`` the 2025-11-25 handshake.
    """
    headers = bearer(token) if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(server.base_url + "/mcp", http_client=http), mode=mode) as c,
    ):
        yield c


def ok(result: CallToolResult) -> Any:
    """The JSON a tool answered; its text is the same JSON."""
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


def failed(result: CallToolResult) -> dict[str, Any]:
    """The structured error of a failed tool call (``kind``, ``message``, ``hint``, ...)."""
    assert result.is_error, result.structured_content
    assert result.structured_content is not None, result.content
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    error: dict[str, Any] = result.structured_content["error"]
    assert {"kind", "message", "retryable", "hint"} <= set(error), error
    return error


def refused(result: CallToolResult) -> str:
    """The SDK's own refusal of arguments that break the input schema (text only)."""
    assert result.is_error and result.structured_content is None, result
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


async def register(server: Server, token: str, body: dict[str, Any]) -> None:
    """PUT a registration through the REST API (idempotent), and wait until the live view
    (which ``/v0.1``, ``/v1/catalog`` and the MCP face read) shows it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.put(f"/v1/tools/{body['tool_id']}", json=body, headers=bearer(token))
        assert response.is_success, response.text
        await _in_live_view(http, body)


async def _in_live_view(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """The live view follows the feed a few milliseconds behind a write: wait until the
    tool's catalog entry carries every string of its metadata. A tool without endpoints is
    no Consul service: nothing to wait for."""
    if not body.get("endpoints"):
        return
    wanted = {k: v for k, v in body.get("metadata", {}).items() if isinstance(v, str)}
    path = f"/v1/catalog/service/node-type:{body['node_type']}"
    params = {"filter": f'ServiceID == "{body["tool_id"]}"'}
    entries: list[dict[str, Any]] = []
    for _ in range(200):
        answer = await http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        entries = answer.json()
        if entries and wanted.items() <= entries[0]["ServiceMeta"].items():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{body['tool_id']} never reached the live view: {entries}")


async def routable(server: Server, operation: str, count: int) -> dict[str, Any]:
    """``discover``'s answer once ``count`` tools are routable for ``operation``."""
    async with mcp_client(server) as client:
        for _ in range(100):
            found: dict[str, Any] = ok(await client.call_tool("discover", {"operation": operation}))
            if found["explanation"]["routable"] >= count:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError(f"{operation} never had {count} routable tools: {found}")


async def until_event(subscription: Subscription, wanted: ServerEvent, timeout: float = 10) -> None:
    """Read ``subscription`` until ``wanted`` arrives (TimeoutError after ``timeout`` s)."""
    async with asyncio.timeout(timeout):
        async for event in subscription:
            if event == wanted:
                return
    raise AssertionError(f"the stream ended before {wanted}")
