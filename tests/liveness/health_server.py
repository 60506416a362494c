"""A real HTTP/1.1 server on loopback whose answers per path the test scripts.

Every path answers ``200 ok`` unless told otherwise: ``answer(path, ...)`` sets
a lasting answer, ``script(path, [...])`` queues answers used one per request
(the last one then stays). It keeps connections alive, counts requests per
path and the most requests in flight at once, and can hang, redirect or send
a large body. Also used by ``benchmarks/bench_liveness.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field

__all__ = ["Answer", "HealthServer"]

_REASONS = {200: "OK", 204: "No Content", 301: "Moved", 302: "Found", 404: "Not Found"}


@dataclass(frozen=True)
class Answer:
    """One scripted response; ``delay`` seconds before it, ``body_size`` bytes of filler body."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body_size: int | None = None


class HealthServer:
    """Serves scripted answers on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.scripts: dict[str, deque[Answer]] = {}
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_sent = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(
        self,
        path: str,
        status: int = 200,
        *,
        body: bytes = b"ok",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        body_size: int | None = None,
    ) -> None:
        self.scripts.pop(path, None)
        self.answers[path] = Answer(status, body, headers or {}, delay, body_size)

    def script(self, path: str, statuses: list[int]) -> None:
        self.scripts[path] = deque(Answer(s) for s in statuses)

    def _next(self, path: str) -> Answer:
        queue = self.scripts.get(path)
        if queue:
            answer = queue.popleft()
            if not queue:
                self.answers[path] = answer  # the last scripted answer stays
                del self.scripts[path]
            return answer
        return self.answers.get(path, Answer())

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=2048)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].decode()
                self.hits[path] += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await self._respond(writer, self._next(path))
                except ConnectionError:
                    return
                finally:
                    self.in_flight -= 1
        except asyncio.CancelledError:
            # close() ends a hanging answer: return quietly (Python 3.11's stream
            # callback logs a traceback for a handler task that ends cancelled).
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, writer: asyncio.StreamWriter, answer: Answer) -> None:
        if answer.delay:
            await asyncio.sleep(answer.delay)
        size = answer.body_size if answer.body_size is not None else len(answer.body)
        lines = [f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in answer.headers.items()]
        lines += [f"content-length: {size}", "content-type: text/plain", "", ""]
        writer.write("\r\n".join(lines).encode())
        if answer.body_size is None:
            writer.write(answer.body)
            self.bytes_sent += len(answer.body)
        else:
            chunk = b"x" * 65536
            left = answer.body_size
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                writer.write(piece)
                await writer.drain()
                self.bytes_sent += len(piece)
                left -= len(piece)
        await writer.drain()


async def _serve_forever() -> None:
    async with HealthServer() as server:
        print(f"port {server.port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # a server in a process of its own (benchmarks)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever())
