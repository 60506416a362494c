"""A real HTTP/1.1 tool on 127.0.0.1 for the discovery tests and benchmark.

In the test's event loop (:class:`ToolServer`) or as a process of its own
(``python -m tests.services.discovery.tool_server NAME``, which prints
``PORT <n>`` and serves until killed). It keeps connections alive, records
every request, and answers ``{"tool": NAME, "path": ..., "received": <body>}``
unless told to answer with another status, a non-JSON body, late, not at all
(a reset before or after reading the request), or with a big body written
piece by piece (with Content-Length or chunked) that records how much of it
the caller let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support import REPO_ROOT, clean_env

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Error", 503: "Unavailable"}
_PIECE = 64 * 1024  # a big body is written this much at a time


@dataclass
class Reply:
    """How the tool answers: status, raw body (``None``: the JSON echo), delay in seconds."""

    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    reset: bool = False  # accept, then reset the connection without reading a byte
    reset_after_read: bool = False  # read and record the request, then reset: no answer
    big: int = 0  # answer a JSON object of this many bytes, written piece by piece
    chunked: bool = False  # send the big answer chunked, without Content-Length


@dataclass
class ToolServer:
    """An HTTP tool served by the current event loop."""

    name: str
    reply: Reply = field(default_factory=Reply)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # wall clock at each request
    sent: list[int] = field(default_factory=list)  # body bytes written, per big answer
    cut_short: list[bool] = field(default_factory=list)  # caller hung up, per big answer
    port: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.received = asyncio.Event()
        self.big_done = asyncio.Event()  # a big answer ended, written whole or cut short
        self._closing = asyncio.Event()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> ToolServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Closing the transports ends every handler (EOF); cancelling them
        # would make asyncio's stream machinery log an error.
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def __aenter__(self) -> ToolServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        if self.reply.reset:
            _reset(writer)
            self._handlers.discard(task)
            self._writers.discard(writer)
            return
        try:
            await serve_connection(reader, writer, functools.partial(self._answer, writer))
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, path: str, body: bytes
    ) -> tuple[int, str, bytes] | None:
        received = orjson.loads(body) if body else None
        self.requests.append((path, received))
        self.times.append(time.time())
        self.received.set()
        reply = self.reply
        if reply.reset_after_read:
            # Whatever the tool did with the request is done: then it dies.
            _reset(writer)
            return None
        if reply.big:
            await self._send_big(writer, reply)
            return None
        if reply.delay:
            # A slow tool, on purpose (cut short when the server closes).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        if reply.body is not None:
            return reply.status, reply.content_type, reply.body
        payload = orjson.dumps({"tool": self.name, "path": path, "received": received})
        return reply.status, "application/json", payload

    async def _send_big(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """Write a ``reply.big``-byte JSON answer; record how much of it went out."""
        # A small send buffer, so that the kernel cannot take the whole body
        # on behalf of a caller that stopped reading.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _PIECE)
        body = b'{"pad":"' + b"x" * max(reply.big - 10, 0) + b'"}'
        framing = "Transfer-Encoding: chunked" if reply.chunked else f"Content-Length: {len(body)}"
        head = (
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n"
        )
        sent = 0
        try:
            writer.write(head.encode())
            await writer.drain()
            for start in range(0, len(body), _PIECE):
                if writer.transport.is_closing():
                    raise ConnectionResetError("the caller hung up")
                piece = body[start : start + _PIECE]
                writer.write(
                    f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if reply.chunked else piece
                )
                await writer.drain()
                sent += len(piece)
            if reply.chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except ConnectionError:
            self.cut_short.append(True)
        else:
            self.cut_short.append(False)
        finally:
            self.sent.append(sent)
            self.big_done.set()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), as a crashing process would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def serve(answer: Any) -> asyncio.Server:
    """A server on a free port of 127.0.0.1 that serves every connection with
    :func:`serve_connection` and ``answer``, then closes it; not yet closed itself."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve_connection(reader, writer, answer)
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Any,
) -> None:
    """Serve HTTP/1.1 requests with Content-Length bodies on one connection until it closes.

    ``answer(path, body)`` returns ``(status, content type, body)``, or ``None``
    when it dealt with the connection itself (answered or reset it): serving ends.
    """
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        try:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        answered = await answer(path, body)
        if answered is None:
            return
        status, content_type, payload = answered
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        except ConnectionError:
            return
        if headers.get("connection", "").lower() == "close":
            return


class ToolProcess:
    """A tool in a process of its own, to be killed for real."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.services.discovery.tool_server", name],
            cwd=REPO_ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the child prints it at once or dies
        if not line.startswith("PORT "):
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError(f"tool process {name} did not start: {line!r}")
        self.port = int(line.split()[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        """SIGKILL, and reap: its sockets are closed when this returns."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _main(name: str) -> None:
    async def answer(path: str, body: bytes) -> tuple[int, str, bytes]:
        received = orjson.loads(body) if body else None
        payload = orjson.dumps({"tool": name, "path": path, "received": received})
        return 200, "application/json", payload

    server = await serve(answer)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
