"""End to end, shaped like an agent: a real local HTTP tool that computes a sha256 registers
itself for ``hash``; a separate process (``agent.py``) that knows only the MCP URL and a token
finds it through ``search_tools`` and ``discover`` and gets the hash back through ``call_tool``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from tests.api.mcp.helpers import register, routable
from tests.services.discovery.tool_server import serve
from tests.support import REPO_ROOT, Server, clean_env

AGENT = Path(__file__).with_name("agent.py")
TEXT = "the quick brown fox jumps over the lazy dog, ünïcödé included"


@asynccontextmanager
async def hash_tool() -> AsyncIterator[tuple[str, list[object]]]:
    """An HTTP tool on loopback: POST ``{"content": text}`` -> ``{"sha256": hex}``."""
    received: list[object] = []

    async def answer(path: str, body: bytes) -> tuple[int, str, bytes]:
        payload = orjson.loads(body)
        received.append(payload)
        content = payload.get("content") if isinstance(payload, dict) else None
        if not isinstance(content, str):
            return 400, "application/json", b'{"error": "content (a string) is required"}'
        digest = hashlib.sha256(content.encode()).hexdigest()
        return 200, "application/json", orjson.dumps({"algorithm": "sha256", "sha256": digest})

    server = await serve(answer)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/hash", received


async def test_an_agent_that_knows_only_the_mcp_url_gets_a_hash(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    async with hash_tool() as (url, received):
        tool = {
            "tool_id": f"hasher-{uid}",
            "node_type": "compute",
            "capabilities": {"operations": ["hash"], "algorithms": ["sha256"]},
            "endpoints": {"hash": url},
            "metadata": {"description": "Hashes text"},
        }
        await register(registry, token, tool)
        await routable(registry, "hash", 1)  # discovery's index has caught up with the feed
        # A real process, on its own event loop: the tool keeps answering in this one.
        agent = await asyncio.create_subprocess_exec(
            sys.executable, str(AGENT), registry.base_url + "/mcp", token, TEXT,
            cwd=REPO_ROOT, env=clean_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await agent.communicate()
        assert agent.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["tool_id"] == f"hasher-{uid}" and result["candidates"] == [f"hasher-{uid}"]
    assert result["answer"] == {
        "algorithm": "sha256",
        "sha256": hashlib.sha256(TEXT.encode()).hexdigest(),
    }
    assert received == [{"content": TEXT}]  # one call, the payload as the agent sent it
