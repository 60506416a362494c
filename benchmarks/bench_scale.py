"""One million tools on one box (issue 15): the discovery index and the queries at scale.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_scale                 # 1,000,000 tools: minutes
    .venv/bin/python -m benchmarks.bench_scale --tools 2000    # the CI smoke run: seconds
    .venv/bin/python -m benchmarks.bench_scale --only index

With ``DATABASE_URL`` set it creates a throwaway database on that server;
otherwise it starts the embedded PostgreSQL in a fresh data dir under /tmp
(both through ``_support.Server``) and removes it after.

:func:`seed` writes ``--tools`` realistic tools (``bench_repository``'s
``tool_payload``) with ``COPY`` and reports the time; then each section runs
on that database. Sections (``--only`` picks some; add one by writing an
``async def section_x(ctx) -> None`` and listing it in ``SECTIONS``):

* ``index``: the discovery index. Memory per tool as the RSS growth of this
  process over the same process with the service built and the index empty,
  and as ``tracemalloc``'s traced bytes of a second load; the initial load's
  time; ``discover_tool`` latency per call over random operations (the
  routing decision, ``ToolIndex.pick``, which ``route_request`` uses, and the
  full ``discover_tool``, its registration from the LRU or one query by id);
  registration-to-visible latency (``create_registration`` through the
  repository until the following index holds the tool), and one full
  heartbeat sweep.
* ``queries``: ``EXPLAIN (ANALYZE, BUFFERS)`` of the repository's own
  ``find_tools`` at this size: a 1%-selective capability containment (one page
  of 100), a SQL/JSON path, and keyset paging from the middle; p50 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from benchmarks._support import COMMON, OTHER_OPERATIONS, RARE, Server, pct, tool_payload
from benchmarks.bench_repository import source_revision, sql
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import (
    PostgresClient,
    ToolDiscoveryService,
    ToolRegistrationRepository,
)
from omninode_bridge.services.discovery import DiscoveryTuning
from omninode_bridge.services.tool_registration_repository import Q as REPO_Q
from omninode_bridge.settings import Settings

COPY_BATCH = 50_000
COLUMNS = (
    "tool_id",
    "node_type",
    "capabilities",
    "endpoints",
    "metadata",
    "health_endpoint",
    "last_heartbeat",
)
OPERATIONS = ["read", "transcode", *OTHER_OPERATIONS]
PAGE = 100

# Targets of issue 15.
MAX_BYTES_PER_TOOL = 600
MAX_LOAD_SECONDS_PER_MILLION = 20.0
MAX_PICK_P50_US = 5.0
MAX_PICK_P99_US = 50.0
MAX_VISIBLE_P99_MS = 100.0
MAX_QUERY_P50_MS = 20.0


def tool_id_of(i: int) -> str:
    return f"scale-tool-{i:07d}"


async def seed(dsn: str, n: int) -> float:
    """Migrate ``dsn`` and write ``n`` realistic tools (heartbeat now) with COPY.

    Returns the seconds taken, ``VACUUM ANALYZE`` included. The tools are
    ``_support.tool_payload``'s, ids ``scale-tool-0000000`` up; no
    change-feed events are written (the index loads from the table).
    """
    await runner.upgrade(dsn)
    started = time.perf_counter()
    rng = random.Random(15)
    dumps = orjson.dumps
    conn = await asyncpg.connect(dsn, timeout=30, command_timeout=3600)
    try:
        now = await conn.fetchval("SELECT now()")
        for start in range(0, n, COPY_BATCH):
            records = []
            for i in range(start, min(n, start + COPY_BATCH)):
                p = tool_payload(rng, tool_id_of(i))
                records.append(
                    (
                        p["tool_id"],
                        p["node_type"].value,
                        dumps(p["capabilities"]).decode(),
                        dumps(p["endpoints"]).decode(),
                        dumps(p["metadata"]).decode(),
                        p["health_endpoint"],
                        now,
                    )
                )
            await conn.copy_records_to_table("tool_registrations", records=records, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE tool_registrations")
    finally:
        await conn.close()
    return time.perf_counter() - started


# -- measuring -------------------------------------------------------------------


@dataclass
class Row:
    target: str
    figure: str
    passed: bool | None  # None: informative, no target


@dataclass
class Context:
    dsn: str
    tools: int
    rows: list[Row] = field(default_factory=list)

    def add(self, target: str, figure: str, passed: bool | None = None) -> None:
        self.rows.append(Row(target, figure, passed))
        mark = "" if passed is None else (" PASS" if passed else " MISS")
        print(f"  {target}: {figure}{mark}", flush=True)


def rss_bytes() -> int:
    """This process's resident set size now (not the peak)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def settings() -> Settings:
    # Seeded heartbeats must stay fresh for the whole run: a long TTL.
    return Settings(
        pool_min_size=2,
        pool_max_size=4,
        connect_timeout=30,
        command_timeout=600,
        ttl_seconds=6 * 3600,
        retention_seconds=7 * 3600,
    )


TUNING = DiscoveryTuning(full_sweep_interval=3600.0)  # the sweep is timed on its own


async def timed_load(service: ToolDiscoveryService) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of the initial load."""
    started, cpu = time.perf_counter(), time.process_time()
    await service.start()
    return time.perf_counter() - started, time.process_time() - cpu


async def per_call_us(calls: int, call: Callable[[str], Awaitable[Any]]) -> list[float]:
    rng = random.Random(1)
    ops = [rng.choice(OPERATIONS) for _ in range(calls)]
    clock = time.perf_counter_ns
    out: list[float] = []
    for i, op in enumerate(ops):
        t0 = clock()
        await call(op)
        out.append((clock() - t0) / 1000)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the index's background work run, as a server would
    return out


async def section_index(ctx: Context) -> None:
    """Target 1: memory, load time, discover latency, registration-to-visible."""
    n = ctx.tools
    async with PostgresClient(settings(), dsn=ctx.dsn) as client:
        repo = ToolRegistrationRepository(client)
        service = ToolDiscoveryService(repo, tuning=TUNING)
        gc.collect()
        before = rss_bytes()
        load_s, load_cpu = await timed_load(service)
        gc.collect()
        grown = rss_bytes() - before
        assert len(service.index) == n, (len(service.index), n)
        per_tool = grown / n
        ctx.add("index RSS growth per tool", f"{per_tool:,.0f} B", per_tool <= MAX_BYTES_PER_TOOL)
        limit = MAX_LOAD_SECONDS_PER_MILLION * max(n, 1) / 1_000_000
        ctx.add(
            f"initial load of {n:,} tools (wall; this process's CPU {load_cpu:.1f} s)",
            f"{load_s:.1f} s",
            load_s < limit,
        )
        try:
            await index_latency(ctx, service)
            await visibility(ctx, service, repo)
            sweep_started = time.perf_counter()
            rows = await service._sync.refresh_heartbeats(full=True)
            ctx.add(
                f"full heartbeat sweep ({rows:,} rows, event loop busy)",
                f"{time.perf_counter() - sweep_started:.2f} s",
            )
        finally:
            await service.aclose()
        del service
        gc.collect()
        # tracemalloc: a second index, loaded while tracing (slower; not timed).
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        traced = ToolDiscoveryService(repo, tuning=TUNING)
        await traced.start()
        await traced._sync.stop()
        gc.collect()
        traced_bytes = tracemalloc.get_traced_memory()[0] - traced_before
        tracemalloc.stop()
        per_tool = traced_bytes / n
        ctx.add("index tracemalloc bytes per tool", f"{per_tool:,.0f} B", per_tool <= 600)
        await traced.aclose()


async def index_latency(ctx: Context, service: ToolDiscoveryService) -> None:
    calls = 200_000 if ctx.tools >= 100_000 else 20_000
    index = service.index

    async def pick(op: str) -> object:
        return index.pick(op)

    await per_call_us(2000, pick)  # warm-up
    us = await per_call_us(calls, pick)
    p50, p99 = pct(us, 50), pct(us, 99)
    ctx.add(
        f"routing decision (ToolIndex.pick) p50 / p99, {calls:,} calls",
        f"{p50:.2f} / {p99:.2f} µs",
        p50 < MAX_PICK_P50_US and p99 < MAX_PICK_P99_US,
    )
    # The full discover_tool: the registration from the LRU (a few hot tools) ...
    hot = [f"scale-hot-{i}" for i in range(3)]
    for tool_id in hot:
        await service.repository.create_registration(
            ModelToolRegistrationCreate(
                tool_id=tool_id,
                node_type="compute",
                capabilities={"operations": ["scale-hot"]},
                endpoints={"scale-hot": f"http://{tool_id}.local/scale-hot"},
            )
        )
    async with asyncio.timeout(30):
        while len(service.index.routable("scale-hot")) < len(hot):
            await service.wait_for_update()
    for _ in range(50):
        await service.discover_tool("scale-hot")

    async def hot_call(op: str) -> object:
        return await service.discover_tool("scale-hot")

    us = await per_call_us(min(calls, 50_000), hot_call)
    p50, p99 = pct(us, 50), pct(us, 99)
    ctx.add(
        "discover_tool p50 / p99, registration in the LRU",
        f"{p50:.2f} / {p99:.2f} µs",
        p50 < MAX_PICK_P50_US and p99 < MAX_PICK_P99_US,
    )
    # ... and over random operations of the whole index (mostly one query by id).
    misses = service.registrations.misses
    us = await per_call_us(5000, service.discover_tool)
    share = (service.registrations.misses - misses) / 5000
    p50, p99 = pct(us, 50), pct(us, 99)
    ctx.add(
        f"discover_tool p50 / p99, random operations ({share:.0%} LRU misses: one query by id)",
        f"{p50:.1f} / {p99:.1f} µs",
        p50 < MAX_PICK_P50_US and p99 < MAX_PICK_P99_US,
    )


async def visibility(
    ctx: Context,
    service: ToolDiscoveryService,
    repo: ToolRegistrationRepository,
    samples: int = 200,
) -> None:
    """Create through the repository; wait until the index holds the tool."""
    latencies: list[float] = []
    for i in range(samples):
        tool_id = f"scale-new-{i:04d}"
        model = ModelToolRegistrationCreate(
            tool_id=tool_id,
            node_type="effect",
            capabilities={"operations": ["scale-new"]},
            endpoints={"scale-new": f"http://{tool_id}.local/scale-new"},
        )
        started = time.perf_counter()
        await repo.create_registration(model)
        async with asyncio.timeout(10):
            while tool_id not in service.index:
                await service.wait_for_update()
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    ctx.add(
        f"registration visible to discovery p50 / p99 ({samples} samples)",
        f"{p50:.1f} / {p99:.1f} ms",
        p99 < MAX_VISIBLE_P99_MS,
    )


async def section_queries(ctx: Context) -> None:
    """Target 5: the repository's find_tools stays index-backed at this size."""
    query = REPO_Q["find_tools"]
    middle = tool_id_of(ctx.tools // 2)
    cases: list[tuple[str, tuple[Any, ...]]] = [
        (
            "capability containment, 1% selective, one page of 100",
            (orjson.dumps(dict([RARE])).decode(), None, None, None, None, PAGE),
        ),
        (
            "SQL/JSON path, one page of 100",
            (None, None, None, '$.operations[*] == "transcode"', None, PAGE),
        ),
        ("keyset page of 100 from the middle", (None, None, None, None, middle, PAGE)),
        (
            "capability containment, 50% selective, keyset page from the middle",
            (orjson.dumps(dict([COMMON])).decode(), None, None, None, middle, PAGE),
        ),
    ]
    conn = await asyncpg.connect(ctx.dsn, timeout=30)
    try:
        for label, args in cases:
            for _ in range(3):
                await conn.fetch(query, *args)  # warm
            times = []
            for _ in range(21):
                started = time.perf_counter()
                rows = await conn.fetch(query, *args)
                times.append((time.perf_counter() - started) * 1000)
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + query, *args)
            lines = [r[0] for r in plan]
            uses_index = any("Index" in line for line in lines)
            p50 = statistics.median(times)
            ctx.add(
                f"find_tools: {label} ({len(rows)} rows; plan "
                f"{'index-backed' if uses_index else 'NOT index-backed'}) p50",
                f"{p50:.2f} ms",
                p50 < MAX_QUERY_P50_MS and uses_index,
            )
            print("    " + "\n    ".join(lines), flush=True)
    finally:
        await conn.close()


SECTIONS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "index": section_index,
    "queries": section_queries,
}


# -- the run -----------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    out = ["| target | figure | pass/miss |", "| --- | --- | --- |"]
    for row in rows:
        verdict = "-" if row.passed is None else ("pass" if row.passed else "**miss**")
        out.append(f"| {row.target} | {row.figure} | {verdict} |")
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    server = Server()
    await server.start()
    try:
        print(f"code: {await asyncio.to_thread(source_revision)}", flush=True)
        print(f"server: {await server.admin('SELECT version()')}", flush=True)
        print(f"client: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        dsn = await server.create(f"scale_{os.getpid()}")
        ctx = Context(dsn, args.tools)
        seconds = await seed(dsn, args.tools)
        size = await sql(dsn, "SELECT pg_size_pretty(pg_total_relation_size('tool_registrations'))")
        ctx.add(
            f"seeding {args.tools:,} tools (COPY, then VACUUM ANALYZE; table {size})",
            f"{seconds:.1f} s ({args.tools / seconds:,.0f} rows/s)",
        )
        for name in args.only or list(SECTIONS):
            print(f"== {name}", flush=True)
            await SECTIONS[name](ctx)
    finally:
        await server.stop()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(table(ctx.rows))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    missed = [r for r in ctx.rows if r.passed is False]
    return 1 if missed and args.strict else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tools", type=int, default=1_000_000, help="tools to seed")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SECTIONS), help="run these sections (default: all)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.tools < 1:
        parser.error("--tools must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
