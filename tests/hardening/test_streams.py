"""The change stream and its edges: cursors, revoked tokens, slow readers, sizes, bad ids."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService
from tests.support import (
    Server,
    base_settings,
    bearer,
    metric_value,
    running_server,
    tool_body,
)

BUFFER = 65536
DROPPED = "toolreg_sse_subscribers_dropped_total"


@pytest.fixture(scope="module")
def streams(module_db: str) -> Iterator[Server]:
    """A server that re-checks stream tokens every 0.3 s and buffers 64 KiB per subscriber."""
    env = {"TOOLREG_STREAM_TOKEN_RECHECK_SECONDS": "0.3", "TOOLREG_SSE_BUFFER_BYTES": str(BUFFER)}
    with running_server(module_db, env=env) as running:
        yield running


@pytest.mark.parametrize("cursor", ["99999999999999999999-0", "1-99999999999999999999"])
async def test_a_cursor_out_of_range_is_a_422(streams: Server, cursor: str) -> None:
    async with httpx.AsyncClient(base_url=streams.base_url, timeout=10) as http:
        response = await http.get("/v1/changes", headers={"Last-Event-ID": cursor})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "since"


@pytest.mark.parametrize("cursor", ["18446744073709551615-0", "9999999-1"])
async def test_a_cursor_ahead_of_the_feed_is_a_410(streams: Server, cursor: str) -> None:
    async with httpx.AsyncClient(base_url=streams.base_url, timeout=10) as http:
        response = await http.get("/v1/changes", headers={"Last-Event-ID": cursor})
        assert response.status_code == 410, response.text
        detail = response.json()["detail"]
        assert "ahead" in detail
        assert "reconnect without 'since' and Last-Event-ID" in detail  # what an HTTP client does


async def test_a_lone_surrogate_in_a_batch_heartbeat_is_a_422_and_writes_nothing(
    streams: Server, uid: str
) -> None:
    token = bearer(await streams.token("write"))
    tool_id = f"surrogate-{uid}"
    async with httpx.AsyncClient(base_url=streams.base_url, timeout=10) as http:
        assert (await http.post("/v1/tools", json=tool_body(tool_id), headers=token)).is_success
        before = (await http.get(f"/v1/tools/{tool_id}")).json()["last_heartbeat"]
        raw = '{"tool_ids": ["' + tool_id + '", "\\ud800"]}'
        response = await http.post(
            "/v1/heartbeats",
            content=raw,
            headers={**token, "content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "tool_ids.1"
        assert (await http.get(f"/v1/tools/{tool_id}")).json()["last_heartbeat"] == before


async def test_a_registration_larger_than_its_bound_is_refused(streams: Server, uid: str) -> None:
    token = bearer(await streams.token("write"))
    endpoints = {f"op{i}": f"http://h/{'x' * 1000}" for i in range(400)}  # about 400 KB
    async with httpx.AsyncClient(base_url=streams.base_url, timeout=10) as http:
        response = await http.post(
            "/v1/tools", json=tool_body(f"big-{uid}", endpoints=endpoints), headers=token
        )
        assert response.status_code == 422, response.text
        assert "TOOLREG_MAX_REGISTRATION_BYTES" in response.text
        assert (await http.get(f"/v1/tools/big-{uid}")).status_code == 404


async def test_the_stream_of_a_revoked_token_ends(streams: Server, uid: str) -> None:
    name = f"reader-{uid}"
    token = bearer(await streams.token("read", name=name))
    async with (
        httpx.AsyncClient(base_url=streams.base_url, timeout=30) as http,
        http.stream("GET", "/v1/changes", headers=token) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == ": connected"
        async with PostgresClient(base_settings(pool_max_size=1), dsn=streams.dsn) as c:
            assert await TokenService(c).revoke(name)
        seen = []
        async with asyncio.timeout(5):
            async for line in lines:
                seen.append(line)
        assert "event: error" in seen and any("revoked" in line for line in seen)


async def test_a_subscriber_that_stops_reading_is_cut_off(streams: Server, uid: str) -> None:
    token = bearer(await streams.token("write"))
    host, port = streams.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: writes back up
    sock.connect((host, int(port)))
    try:
        sock.sendall(b"GET /v1/changes HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.3)
        metadata = {"blob": "y" * 60_000}
        async with httpx.AsyncClient(base_url=streams.base_url, timeout=30) as http:
            # The module's server is shared: count from what other tests' streams left.
            dropped = metric_value((await http.get("/metrics")).text, DROPPED) or 0.0
            for index in range(120):  # about 7 MB of events, far past buffers and windows
                tool_id = f"fat-{uid}-{index}"
                response = await http.post(
                    "/v1/tools", json=tool_body(tool_id, metadata=metadata), headers=token
                )
                assert response.status_code == 201, response.text
            sock.setblocking(False)
            received = bytearray()
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(20):
                while chunk := await loop.sock_recv(sock, 1 << 20):
                    received.extend(chunk)
            # The stream ended with an error instead of holding the whole backlog.
            assert b"fell more than" in received
            assert received.count(b"event: created") < 120
            assert metric_value((await http.get("/metrics")).text, DROPPED) == dropped + 1
    finally:
        sock.close()
