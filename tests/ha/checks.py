"""What must hold after a failover: the database, the feed, discovery and the one leader.

Each check returns a list of problems (empty: it holds) so a test can report them
all at once, and the benchmark can count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.ha.load import (
    Background,
    SseFollower,
    ToolHistory,
    WriterLoad,
    discover_op,
    feed_position,
)
from tests.support import (
    LEADER_ELECTED,
    LEADER_STEPPED_DOWN,
    PASS_BEGINS,
    PASS_ENDED,
    log_time,
    metric_value,
)

__all__ = [
    "DbTool",
    "LeaderLog",
    "OutageMonitor",
    "check_database",
    "check_discovery",
    "check_feed",
    "check_leadership",
    "check_one_leader",
    "read_tools",
    "wait_discovery",
]

HEARTBEAT_SLACK = 0.05  # seconds: the database's now() against this process's clock


@dataclass(frozen=True)
class DbTool:
    seq: int | None
    last_heartbeat: float  # epoch seconds


async def read_tools(dsn: str, prefix: str) -> dict[str, DbTool]:
    """The registrations of this load now, read from the primary."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT tool_id, (metadata->>'seq')::int AS seq,"
            " extract(epoch FROM last_heartbeat)::float8 AS beat"
            " FROM tool_registrations WHERE tool_id LIKE $1",
            prefix + "-%",
        )
    finally:
        await conn.close()
    return {r["tool_id"]: DbTool(r["seq"], r["beat"]) for r in rows}


def _expected(history: ToolHistory) -> tuple[set[int | None], float]:
    """The acceptable seqs (``None``: absent), and the newest acknowledged heartbeat's send time."""
    seq: int | None = None
    beat = 0.0
    for op in history.acked:
        if op.kind in ("created", "updated"):
            seq = op.seq
            beat = max(beat, op.sent) if op.kind == "created" else beat
        elif op.kind == "deleted":
            seq = None
        else:
            beat = max(beat, op.sent)
    allowed = {seq}
    uncertain = history.uncertain
    if uncertain is not None:
        if uncertain.kind in ("created", "updated"):
            allowed.add(uncertain.seq)
        elif uncertain.kind == "deleted":
            allowed.add(None)
    return allowed, beat


def check_database(load: WriterLoad, tools: dict[str, DbTool]) -> list[str]:
    """Every acknowledged write is in the database with its content; nothing else is."""
    problems = []
    for tool_id, history in load.tools.items():
        allowed, beat = _expected(history)
        row = tools.get(tool_id)
        seq = row.seq if row is not None else None
        if seq not in allowed:
            state = f"seq {seq}" if row is not None else "absent"
            problems.append(f"{tool_id}: {state} in the database, expected one of {allowed}")
        elif row is not None and row.last_heartbeat + HEARTBEAT_SLACK < beat:
            problems.append(
                f"{tool_id}: last_heartbeat {row.last_heartbeat:.3f} older than an "
                f"acknowledged heartbeat sent at {beat:.3f}"
            )
    for tool_id in tools.keys() - load.tools.keys():
        problems.append(f"{tool_id}: in the database, never written")
    return problems


def check_feed(load: WriterLoad, follower: SseFollower) -> list[str]:
    """Every acknowledged change exactly once, in order; no change that was never written."""
    problems = []
    positions = [feed_position(e.cursor) for e in follower.events]
    for before, after, event in zip(positions, positions[1:], follower.events[1:], strict=False):
        if after <= before:
            problems.append(f"event {event.cursor} came after {before}: out of order or repeated")
    seen: dict[tuple[str, str, int | None], list[tuple[int, int]]] = {}
    for event, position in zip(follower.events, positions, strict=True):
        if event.tool_id not in load.tools or event.kind not in ("created", "updated", "deleted"):
            continue
        key = (event.tool_id, event.kind, event.seq if event.kind != "deleted" else None)
        seen.setdefault(key, []).append(position)
    written: set[tuple[str, str, int | None]] = set()
    for history in load.tools.values():
        order = []
        for op in history.acked:
            if op.kind == "heartbeat":
                continue
            key = (op.tool_id, op.kind, op.seq if op.kind != "deleted" else None)
            written.add(key)
            got = seen.get(key, [])
            if len(got) != 1:
                problems.append(f"acknowledged {key} delivered {len(got)} times")
            else:
                order.append(got[0])
        if order != sorted(order):
            problems.append(f"{history.tool_id}: acknowledged changes delivered out of order")
        uncertain = history.uncertain
        if uncertain is not None and uncertain.kind != "heartbeat":
            key = (uncertain.tool_id, uncertain.kind, uncertain.seq or None)
            if uncertain.kind == "deleted":
                key = (uncertain.tool_id, "deleted", None)
            written.add(key)
            if len(seen.get(key, [])) > 1:
                problems.append(f"unacknowledged {key} delivered more than once")
    for key in seen.keys() - written:
        problems.append(f"{key} delivered, never written")
    # One writer's acknowledged changes, each sent after the previous one was
    # answered, are committed in that order: the feed must show them in it.
    by_writer: dict[str, list[tuple[float, tuple[int, int]]]] = {}
    for history in load.tools.values():
        writer = history.tool_id.rsplit("-", 1)[0]
        for op in history.acked:
            if op.kind == "heartbeat":
                continue
            key = (op.tool_id, op.kind, op.seq if op.kind != "deleted" else None)
            if len(seen.get(key, [])) == 1:
                by_writer.setdefault(writer, []).append((op.sent, seen[key][0]))
    for writer, ops in by_writer.items():
        ops.sort()
        feed_order = [position for _, position in ops]
        if feed_order != sorted(feed_order):
            problems.append(f"{writer}: acknowledged changes delivered out of write order")
    return problems


async def _discovers(http: httpx.AsyncClient, url: str, tool_id: str) -> bool | None:
    """Whether the replica at ``url`` routes the tool's operation (``None``: no answer)."""
    try:
        response = await http.get(f"{url}/v1/discover/{discover_op(tool_id)}")
    except httpx.TransportError:
        return None
    if response.status_code not in (200, 404):
        return None
    return response.status_code == 200


async def check_discovery(urls: list[str], expected: dict[str, bool]) -> list[str]:
    """Tools whose routability differs from ``expected`` on some replica, now."""
    problems = []
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            ids = sorted(expected)
            for start in range(0, len(ids), 25):
                chunk = ids[start : start + 25]
                answers = await asyncio.gather(*(_discovers(http, url, t) for t in chunk))
                for tool_id, answer in zip(chunk, answers, strict=True):
                    if answer is not expected[tool_id]:
                        problems.append(
                            f"{url}: discovery says {answer} for {tool_id}, "
                            f"the database {expected[tool_id]}"
                        )
    return problems


async def wait_discovery(urls: list[str], tool_id: str, timeout: float) -> float:
    """Seconds until every replica routes ``tool_id``'s operation (polled every 10 ms)."""
    started = time.monotonic()
    pending = set(urls)
    async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(timeout):
        while pending:
            for url in list(pending):
                if await _discovers(http, url, tool_id):
                    pending.discard(url)
            if pending:
                await asyncio.sleep(0.01)
    return time.monotonic() - started


# -- leadership --------------------------------------------------------------------------------


@dataclass
class LeaderLog:
    """One server's leadership terms and liveness passes, read from its debug log."""

    name: str
    terms: list[tuple[int, float, float]] = field(default_factory=list)  # generation, from, to
    passes: list[tuple[str, float, float]] = field(default_factory=list)  # kind, start, end

    @classmethod
    def read(cls, name: str, log: Path, now: float) -> LeaderLog:
        parsed = cls(name)
        open_terms: dict[int, float] = {}
        begun: dict[tuple[str, str], float] = {}
        for line in log.read_text(errors="replace").splitlines():
            if m := PASS_ENDED.search(line):
                begun.pop((m.group(1), m.group(3)), None)
                parsed.passes.append((m.group(1), log_time(m.group(3)), log_time(m.group(4))))
            elif m := PASS_BEGINS.search(line):
                begun[(m.group(1), m.group(3))] = log_time(m.group(3))
            elif m := LEADER_ELECTED.search(line):
                open_terms[int(m.group(1))] = log_time(m.group(2))
            elif m := LEADER_STEPPED_DOWN.search(line):
                generation = int(m.group(1))
                stepped = log_time(m.group(2))
                start = open_terms.pop(generation, stepped)
                parsed.terms.append((generation, start, stepped))
        parsed.terms += [(g, start, now) for g, start in open_terms.items()]
        # A pass that never logged its end was cancelled when its leader stepped down.
        for (kind, _), start in begun.items():
            ends = [to for _, since, to in parsed.terms if since <= start <= to]
            parsed.passes.append((kind, start, min(ends) if ends else now))
        parsed.terms.sort(key=lambda t: t[1])
        parsed.passes.sort(key=lambda p: p[1])
        return parsed


def check_leadership(logs: list[LeaderLog], lease_generation: int) -> list[str]:
    """One leader at a time: distinct generations, terms and passes that never overlap."""
    problems = []
    terms = sorted(((start, end, g, log.name) for log in logs for g, start, end in log.terms))
    generations = [g for _, _, g, _ in terms]
    if len(set(generations)) != len(generations):
        problems.append(f"a lease generation was elected twice: {generations}")
    if generations != sorted(generations):
        problems.append(f"lease generations elected out of order: {generations}")
    if generations and max(generations) != lease_generation:
        problems.append(
            f"the newest generation elected is {max(generations)}, the lease holds "
            f"{lease_generation}"
        )
    for i, (s1, e1, g1, n1) in enumerate(terms):
        for s2, e2, g2, n2 in terms[i + 1 :]:
            if n1 != n2 and s1 < e2 and s2 < e1:
                problems.append(f"{n1} (generation {g1}) and {n2} (generation {g2}) led at once")
    for log in logs:
        for kind, start, end in log.passes:
            if not any(since <= start and end <= to + 0.5 for _, since, to in log.terms):
                problems.append(f"{log.name}: {kind} pass at {start:.3f} outside its terms")
    for a, b in ((a, b) for i, a in enumerate(logs) for b in logs[i + 1 :]):
        for kind, s1, e1 in a.passes:
            for other, s2, e2 in b.passes:
                if kind == other and s1 < e2 and s2 < e1:
                    problems.append(f"{kind} passes of {a.name} and {b.name} overlap at {s1:.3f}")
    return problems


async def check_one_leader(urls: list[str], timeout: float) -> list[str]:
    """Exactly one replica reports ``toolreg_liveness_leader 1`` (waits up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            gauges: list[float | None] = []
            for url in urls:
                try:
                    text = (await http.get(url + "/metrics")).text
                except httpx.TransportError:
                    gauges.append(None)
                    continue
                gauges.append(metric_value(text, "toolreg_liveness_leader"))
            if gauges.count(1.0) > 1:
                return [f"more than one leader at once: {dict(zip(urls, gauges, strict=True))}"]
            if gauges.count(1.0) == 1:
                return []
            if time.monotonic() > deadline:
                return [f"no leader within {timeout:g}s: {dict(zip(urls, gauges, strict=True))}"]
            await asyncio.sleep(0.1)


# -- what the replicas say during an outage ------------------------------------------------------

_GAUGES = (
    "toolreg_change_feed_following",
    "toolreg_discovery_index_degraded",
    "toolreg_discovery_index_stale_seconds",
    "toolreg_liveness_leader",
)


@dataclass
class Sample:
    at: float
    url: str
    ready: int | None
    detail: dict[str, Any]
    discover: int | None
    gauges: dict[str, float]


class OutageMonitor(Background):
    """Polls every replica's ``/ready``, ``/metrics`` and the discovery of ``anchor``."""

    name = "outage-monitor"

    def __init__(self, urls: list[str], anchor: str, every: float = 0.2) -> None:
        self.urls = urls
        self.anchor = anchor
        self.every = every
        self.samples: list[Sample] = []

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=3) as http:
            while True:
                await asyncio.gather(*(self._sample(http, url) for url in self.urls))
                await asyncio.sleep(self.every)

    async def _sample(self, http: httpx.AsyncClient, url: str) -> None:
        at = time.time()
        ready: int | None = None
        detail: dict[str, Any] = {}
        discover: int | None = None
        gauges: dict[str, float] = {}
        with contextlib.suppress(httpx.TransportError):
            response = await http.get(url + "/ready")
            ready, detail = response.status_code, response.json().get("detail") or {}
        with contextlib.suppress(httpx.TransportError):
            discover = (await http.get(f"{url}/v1/discover/{discover_op(self.anchor)}")).status_code
        with contextlib.suppress(httpx.TransportError):
            text = (await http.get(url + "/metrics")).text
            for name in _GAUGES:
                if m := re.search(rf"^{name} ([\d.e+-]+)$", text, re.MULTILINE):
                    gauges[name] = float(m.group(1))
        self.samples.append(Sample(at, url, ready, detail, discover, gauges))

    def during(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]
