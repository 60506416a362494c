"""A real HTTP/1.1 tool on 127.0.0.1 for the discovery tests and benchmark.

In the test's event loop (:class:`ToolServer`) or as a process of its own
(``python -m tests.services.discovery.tool_server NAME``, which prints
``PORT <n>`` and serves until killed). It keeps connections alive, records
every request, and answers ``{"tool": NAME, "path": ..., "received": <body>}``
unless told to answer with another status, a non-JSON body, or late.
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass
class Reply:
    """How the tool answers: status, raw body (``None``: the JSON echo), delay in seconds."""

    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    reset: bool = False  # accept, then reset the connection without reading a byte


@dataclass
class ToolServer:
    """An HTTP tool served by the current event loop."""

    name: str
    reply: Reply = field(default_factory=Reply)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # wall clock at each request
    port: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.received = asyncio.Event()
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
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self._handlers.discard(task)
            self._writers.discard(writer)
            return
        try:
            await serve_connection(reader, writer, self._answer)
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        received = orjson.loads(body) if body else None
        self.requests.append((path, received))
        self.times.append(time.time())
        self.received.set()
        reply = self.reply
        if reply.delay:
            # A slow tool, on purpose (cut short when the server closes).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        if reply.body is not None:
            return reply.status, reply.content_type, reply.body
        payload = orjson.dumps({"tool": self.name, "path": path, "received": received})
        return reply.status, "application/json", payload


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Any,
) -> None:
    """Serve HTTP/1.1 requests with Content-Length bodies on one connection until it closes."""
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
        status, content_type, payload = await answer(path, body)
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

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve_connection(reader, writer, answer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
