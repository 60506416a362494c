"""A listener that stops reading is cut off without hurting the others, and a database outage
is a clear, retryable error over MCP, after which notifications resume with nothing lost."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.api.mcp.helpers import (
    ENV,
    LISTEN_HEADERS,
    failed,
    listen_body,
    mcp_client,
    register,
    until_event,
)
from tests.support import Server, base_settings, running_server, start_server, stop_server

# More than the kernel's largest send buffer (4 MiB here) of notifications: long tool ids.
MANY = 16_000
PAD = "x" * 220


@pytest.fixture(scope="module")
def roomy(module_db: str) -> Iterator[Server]:
    """A server that takes a listen request naming every one of those URIs."""
    with running_server(
        module_db, env={**ENV, "TOOLREG_MAX_BODY_BYTES": str(16 * 2**20)}
    ) as running:
        yield running


def _listen_request(host: str, port: int, uris: list[str]) -> bytes:
    body = listen_body({"resourceSubscriptions": uris}, client="stall")
    head = f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in LISTEN_HEADERS.items()
    )
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def test_a_listener_that_reads_nothing_is_cut_off_and_the_others_go_on(
    roomy: Server, uid: str
) -> None:
    registry = roomy
    host, port = registry.base_url.removeprefix("http://").split(":")
    ids = [f"stall-{uid}-{n:05d}-{PAD}" for n in range(MANY)]
    uris = [f"toolreg://tools/{tool_id}" for tool_id in ids]
    # A client with a tiny receive window that never reads: the server's writes back up.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    await loop.sock_sendall(sock, _listen_request(host, int(port), uris))
    try:
        async with (
            mcp_client(registry) as client,
            client.listen(resources_list_changed=True) as healthy,
        ):
            await asyncio.sleep(0.5)
            async with PostgresClient(base_settings(pool_max_size=2), dsn=registry.dsn) as db:
                creates = [ModelToolRegistrationCreate(tool_id=i, node_type="effect") for i in ids]
                await ToolRegistrationRepository(db).create_registrations(creates)
            await until_event(healthy, ResourcesListChanged())
            for _ in range(150):  # STALLED_WRITE_SECONDS is 10
                if "closing a listen stream whose client read nothing" in registry.output():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the stalled listener was never cut off")
            # The reader that keeps up still hears the next change.
            await register(registry, await registry.token("write"), _tool(f"after-{uid}"))
            await until_event(healthy, ResourcesListChanged())
    finally:
        sock.close()


def _tool(tool_id: str) -> dict[str, Any]:
    return {"tool_id": tool_id, "node_type": "compute"}


@pytest.mark.embedded
async def test_a_database_outage_is_a_retryable_error_and_nothing_is_missed(
    temp_data_dir: Path, uid: str
) -> None:
    embedded = await start_embedded(temp_data_dir)
    dsn = embedded.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    server = start_server(dsn, env={**ENV, "TOOLREG_CONNECT_TIMEOUT": "2"})
    try:
        token = await server.token("write")
        await register(server, token, _tool(f"before-{uid}"))
        async with (
            mcp_client(server) as client,
            client.listen(
                resources_list_changed=True,
                resource_subscriptions=[f"toolreg://tools/during-{uid}"],
            ) as subscription,
        ):
            await stop_embedded(temp_data_dir)
            for name, arguments in (
                ("search_tools", {}),
                ("get_tool", {"tool_id": f"before-{uid}"}),
            ):
                result = await client.call_tool(name, arguments)
                error = failed(result)
                assert error["kind"] == "registry_unavailable" and error["retryable"] is True
                assert error["retry_after_seconds"] > 0
                text = error["message"]
                assert text.startswith(
                    "Registry unavailable: the registry's database is unavailable"
                )
                assert "retry in" in text
                text = result.content[0].text  # type: ignore[union-attr]
                assert "pgdata" not in text and "5432" not in text  # names no database
            # While it is down nothing can change; once it is back, a change made before
            # the registry follows the feed again is announced after its reload.
            await start_embedded(temp_data_dir)
            async with PostgresClient(base_settings(pool_max_size=1), dsn=dsn) as db:
                await ToolRegistrationRepository(db).create_registration(
                    ModelToolRegistrationCreate(tool_id=f"during-{uid}", node_type="effect")
                )
            during = ResourceUpdated(uri=f"toolreg://tools/during-{uid}")
            await until_event(subscription, during, 30)
            for _ in range(50):  # pooled connections that died with the server fail once each
                found = await client.call_tool("get_tool", {"tool_id": f"during-{uid}"})
                if not found.is_error:
                    break
                await asyncio.sleep(0.1)
            assert not found.is_error, found.content
    finally:
        stop_server(server)
