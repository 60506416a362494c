"""Slowloris: connections that do not finish their request headers in time are closed.

The server runs with ``TOOLREG_HEADER_TIMEOUT_SECONDS=1``; every wait below is
bounded well above that, and fails the test if the server keeps a stalled
connection open past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import Server, running_server

HEADER_TIMEOUT = 1.0
CLOSE_WITHIN = 6.0  # seconds: the timeout plus ample slack, still below keep-alive + timeout
TRICKLE_PAUSE = 0.3
SLOW_CONNECTIONS = 50
# Never finished: no blank line ends the headers, and it outlasts CLOSE_WITHIN byte by byte.
PARTIAL = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60


@pytest.fixture(scope="module")
def strict(module_db: str) -> Iterator[Server]:
    """A server that gives request headers one second."""
    with running_server(
        module_db, env={"TOOLREG_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    ) as running:
        yield running


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` a byte at a time until it is all sent or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TRICKLE_PAUSE)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends before it closes the connection (bounded by CLOSE_WITHIN)."""
    received = b""
    try:
        async with asyncio.timeout(CLOSE_WITHIN):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {CLOSE_WITHIN} s") from None
    return received


async def _stalled_client(server: Server, prefix: bytes = b"") -> bytes:
    """Send ``prefix`` at once, then PARTIAL slowly; what the server sent before closing."""
    reader, writer = await _connect(server)
    try:
        writer.write(prefix)
        trickler = asyncio.create_task(_trickle(writer, PARTIAL))
        try:
            return await _until_closed(reader)
        finally:
            trickler.cancel()
            await asyncio.gather(trickler, return_exceptions=True)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_slow_headers_are_cut_off_while_others_are_served(strict: Server) -> None:
    stalled = [asyncio.create_task(_stalled_client(strict)) for _ in range(SLOW_CONNECTIONS)]
    async with httpx.AsyncClient(base_url=strict.base_url, timeout=30) as http:
        await asyncio.sleep(TRICKLE_PAUSE * 2)  # the stalled ones are connected and trickling
        assert (await http.get("/health")).status_code == 200
    answers = await asyncio.gather(*stalled)
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers), set(answers)


async def test_a_silent_connection_is_answered_408_and_closed(strict: Server) -> None:
    reader, writer = await _connect(strict)
    try:
        answer = await _until_closed(reader)
    finally:
        writer.close()
    head, _, problem = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"content-type: application/problem+json" in head
    assert json.loads(problem)["status"] == 408


async def test_slow_headers_on_a_kept_alive_connection_are_cut_off(strict: Server) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await _stalled_client(strict, prefix=first)
    assert answer.startswith(b"HTTP/1.1 200 "), answer  # the first request was answered


async def test_slow_but_complete_headers_are_served(strict: Server) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    reader, writer = await _connect(strict)
    try:
        for start in range(0, len(request), 20):  # about 0.6 s in all, under the 1 s limit
            writer.write(request[start : start + 20])
            await writer.drain()
            await asyncio.sleep(0.15)
        answer = await _until_closed(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.endswith(b'{"status":"ok","detail":null}'), answer
