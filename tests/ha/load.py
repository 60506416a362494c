"""A writer load, an SSE follower and a discovery probe for the failover tests and benchmark.

Writers go through every registry replica (writer ``i`` through replica ``i mod n``).
Each writes its own tools, one operation at a time: create, update, heartbeat,
update, heartbeat and, for every other tool, delete. An operation that got a 2xx
is *acknowledged*; one that failed (5xx, a transport error) leaves the tool
*uncertain* (the write may or may not have committed) and the writer moves on to
a new tool, so that every tool's history is a run of acknowledged operations and
at most one uncertain one at its end.

Each tool declares one operation of its own, ``ha-<tool_id>``, with an endpoint
for it, so ``GET /v1/discover/ha-<tool_id>`` answers 200 exactly when the
replica's discovery index holds the tool as routable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

__all__ = [
    "Background",
    "Op",
    "SseFollower",
    "ToolHistory",
    "WriterLoad",
    "discover_op",
    "registration",
]

_STEPS = ("created", "updated", "heartbeat", "updated", "heartbeat", "deleted")


def discover_op(tool_id: str) -> str:
    return f"ha-{tool_id}"


def registration(tool_id: str, seq: int) -> dict[str, Any]:
    op = discover_op(tool_id)
    return {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": [op]},
        "endpoints": {op: f"http://127.0.0.1:9/{tool_id}"},
        "metadata": {"seq": seq},
    }


@dataclass
class Op:
    """One write: what, to which tool, when it was sent and answered, and the answer."""

    tool_id: str
    kind: str  # created, updated, deleted, heartbeat
    seq: int  # the metadata seq it wrote (created/updated), else 0
    sent: float  # time.time()
    answered: float = 0.0
    status: int | str = 0

    @property
    def acknowledged(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


@dataclass
class ToolHistory:
    """A tool's acknowledged operations and the uncertain one that may end them."""

    tool_id: str
    acked: list[Op] = field(default_factory=list)
    uncertain: Op | None = None


class WriterLoad:
    """``writers`` concurrent writers through ``urls``, until :meth:`stop`."""

    def __init__(
        self, urls: list[str], token: str, prefix: str, *, writers: int = 4, pause: float = 0.01
    ) -> None:
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {token}"}
        self.prefix = prefix
        self.writers = writers
        self.pause = pause
        self.tools: dict[str, ToolHistory] = {}
        self.ops: list[Op] = []
        self._seq = itertools.count(1)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._writer(i), name=f"writer-{i}") for i in range(self.writers)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    # -- measurements ----------------------------------------------------------------------

    def acknowledged(self) -> list[Op]:
        return [op for op in self.ops if op.acknowledged]

    def unavailability(self, since: float) -> tuple[float, float] | None:
        """(first failed write sent at or after ``since``, first acknowledged write sent after
        that failure), both as time.time(); ``None`` when no write failed."""
        failed = [op.sent for op in self.ops if op.sent >= since and not op.acknowledged]
        if not failed:
            return None
        first = min(failed)
        after = [op.sent for op in self.ops if op.sent > first and op.acknowledged]
        assert after, "no write succeeded after the first failure"
        return first, min(after)

    def failures_between(self, start: float, end: float) -> int:
        return sum(1 for op in self.ops if start <= op.sent <= end and not op.acknowledged)

    # -- the writers ---------------------------------------------------------------------------

    async def _writer(self, index: int) -> None:
        url = self.urls[index % len(self.urls)]
        async with httpx.AsyncClient(base_url=url, headers=self.headers, timeout=10) as http:
            for number in itertools.count():
                tool_id = f"{self.prefix}-w{index}-{number}"
                history = self.tools[tool_id] = ToolHistory(tool_id)
                keep = number % 2 == 0  # every other tool stays registered
                for step in _STEPS:
                    if self._stop.is_set():
                        return
                    if step == "deleted" and keep:
                        break
                    op = await self._send(http, tool_id, step)
                    if op.acknowledged:
                        history.acked.append(op)
                    else:
                        history.uncertain = op
                        await asyncio.sleep(0.05)  # the database is away: do not spin
                        break
                    await asyncio.sleep(self.pause)

    async def _send(self, http: httpx.AsyncClient, tool_id: str, kind: str) -> Op:
        seq = next(self._seq) if kind in ("created", "updated") else 0
        op = Op(tool_id, kind, seq, time.time())
        self.ops.append(op)
        try:
            if kind == "created":
                response = await http.post("/v1/tools", json=registration(tool_id, seq))
            elif kind == "updated":
                response = await http.patch(f"/v1/tools/{tool_id}", json={"metadata": {"seq": seq}})
            elif kind == "heartbeat":
                response = await http.post(f"/v1/tools/{tool_id}/heartbeat")
            else:
                response = await http.delete(f"/v1/tools/{tool_id}")
            op.status = response.status_code
            if response.status_code >= 300 and response.status_code < 500:
                # A 4xx here is a bug of the registry (or of this load), never an outage.
                raise AssertionError(f"{kind} {tool_id}: {response.status_code} {response.text}")
        except httpx.TransportError as exc:
            op.status = type(exc).__name__
        op.answered = time.time()
        return op


@dataclass
class FeedEvent:
    cursor: str
    kind: str
    tool_id: str
    seq: int | None
    received: float


class Background:
    """A loop, :meth:`_run`, run as a task named :attr:`name` from :meth:`start` until
    :meth:`stop` cancels it."""

    name = "background"
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class SseFollower(Background):
    """Follows ``/v1/changes`` from ``cursor``, reconnecting with ``Last-Event-ID``.

    Each reconnect goes to the next replica, as a client behind a load balancer
    would, so the cursor of one replica is resumed on another.
    """

    name = "sse-follower"

    def __init__(self, urls: list[str], cursor: str, token: str) -> None:
        self.urls = urls
        self.cursor = cursor
        self.headers = {"Authorization": f"Bearer {token}"}
        self.events: list[FeedEvent] = []
        self.streams = 0  # streams opened
        self.refused = 0  # connections answered with something else than a stream
        self.changed = asyncio.Event()

    async def _run(self) -> None:
        timeout = httpx.Timeout(5, read=30)
        async with httpx.AsyncClient(timeout=timeout, headers=self.headers) as http:
            for attempt in itertools.count():
                url = self.urls[attempt % len(self.urls)]
                try:
                    async with http.stream(
                        "GET", url + "/v1/changes", headers={"Last-Event-ID": self.cursor}
                    ) as response:
                        if response.status_code != 200:
                            self.refused += 1
                            await response.aread()
                            assert response.status_code in (502, 503), (
                                f"/v1/changes from {self.cursor}: {response.status_code} "
                                f"{response.text}"
                            )
                            await asyncio.sleep(0.1)
                            continue
                        self.streams += 1
                        await self._read(response)
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

    async def _read(self, response: httpx.Response) -> None:
        cursor: str | None = None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                cursor = line[4:]
            elif line.startswith("data: ") and cursor is not None:
                data = orjson.loads(line[6:])
                registration = data.get("registration") or {}
                seq = (registration.get("metadata") or {}).get("seq")
                self.events.append(
                    FeedEvent(cursor, data["kind"], data["tool_id"], seq, time.time())
                )
                self.cursor, cursor = cursor, None
                self.changed.set()

    async def until_cursor(self, cursor: str, timeout: float) -> None:
        """Wait until an event at or after ``cursor`` arrived (feed order)."""
        target = _position(cursor)
        async with asyncio.timeout(timeout):
            while not self.events or _position(self.events[-1].cursor) < target:
                self.changed.clear()
                await self.changed.wait()


def _position(cursor: str) -> tuple[int, int]:
    txid, _, seq = cursor.partition("-")
    return int(txid), int(seq)


def feed_position(cursor: str) -> tuple[int, int]:
    """A cursor as a sortable ``(txid, seq)``."""
    return _position(cursor)
