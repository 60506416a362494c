"""An agent that knows only the registry's MCP URL (and a token): it finds a tool that
offers ``hash`` and gets a hash of a text back from it, through the registry.

    python tests/api/mcp/agent.py <mcp-url> <token> [<text>]

It uses nothing but the official MCP SDK's client over Streamable HTTP, and does what
a model would do with the server's tools: read the tool list, ``search_tools`` by
operation, ``discover`` which tool would take it now, then ``call_tool`` with a JSON
payload. On success it prints one JSON line ``{"tool_id", "candidates", "answer"}``;
on failure the structured error, and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

OPERATION = "hash"


def _answer(result: Any, step: str) -> dict[str, Any]:
    if result.is_error:
        detail = result.structured_content or [c.text for c in result.content]
        raise SystemExit(f"{step} failed: {json.dumps(detail)}")
    answer: dict[str, Any] = result.structured_content
    return answer


async def run(url: str, token: str, text: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        offered = {tool.name for tool in (await client.list_tools()).tools}
        missing = {"search_tools", "discover", "call_tool"} - offered
        if missing:
            raise SystemExit(f"the server does not offer {sorted(missing)}")
        found = _answer(
            await client.call_tool("search_tools", {"operation": OPERATION}), "search_tools"
        )
        candidates = [t["tool_id"] for t in found["tools"] if OPERATION in t["operations"]]
        if not candidates:
            raise SystemExit(f"no healthy tool offers {OPERATION!r}")
        route = _answer(await client.call_tool("discover", {"operation": OPERATION}), "discover")
        if not route["routable"]:
            raise SystemExit(f"no tool can take {OPERATION!r}: {route['explanation']['summary']}")
        answer = _answer(
            await client.call_tool(
                "call_tool", {"operation": OPERATION, "payload": {"content": text}}
            ),
            "call_tool",
        )
    return {"tool_id": route["tool"]["tool_id"], "candidates": candidates, "answer": answer}


DEFAULT_TEXT = "hello from an agent"


def main() -> None:
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    url, token, text = (*sys.argv[1:], DEFAULT_TEXT)[:3]
    print(json.dumps(asyncio.run(run(url, token, text))))


if __name__ == "__main__":
    main()
