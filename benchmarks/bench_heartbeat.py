"""Heartbeat ingest: coalesced single heartbeats, sustained batches at scale, and HOT updates.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_heartbeat [--tools 10000] [--scale-tools 1000000]
        [--hot-tools 100000] [--connections 128] [--seconds 10] [--rounds 3]

With ``DATABASE_URL`` set it creates throwaway databases on that server and
drops them after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after. Three parts:

1. **Single heartbeats over HTTP.** ``--tools`` registrations (bench_repository's
   generator) owned by one ``write`` token; two ``toolreg serve`` processes on
   that database, one uvicorn worker each, the same build: ``coalesced`` (the
   default ``TOOLREG_HEARTBEAT_BATCH_WINDOW_MS``) and ``single``
   (``TOOLREG_HEARTBEAT_BATCH_WINDOW_MS=0``: one statement per request, as
   before the coalescer). Load comes from bench_api's generator (wrk, or its
   asyncio client) with ``--connections`` keep-alive connections, each
   request ``POST /v1/tools/{random id}/heartbeat`` with the token; rounds
   alternate the two servers after a warm-up of each, and the table shows the
   medians. Target: coalesced >= 3x single.
2. **Sustained batches at scale.** ``--scale-tools`` tools (``bench_scale.seed``
   when that module exists, otherwise bench_repository's ``seed``), owned by a
   ``write`` token; ``POST /v1/heartbeats`` with ``--batch`` ids per request,
   paced at ``--scale-tools / 30`` ids per second (every tool once per 30 s)
   for ``--scale-seconds``, ``--scale-clients`` requests in flight at most.
   Target: the rate is held (achieved >= 98% of the target, no batch starting
   more than a second behind schedule).
3. **HOT share** of batch heartbeats (the repository's ``update_heartbeats``
   statement, ``--hot-clients`` connections, ``--hot-passes`` passes over every
   tool) on copies of a ``--hot-tools`` database: the guide's btree index on
   ``last_heartbeat``, the same with fillfactor 80, BRIN instead (fillfactor
   100, 80, 70). ``n_tup_hot_upd / n_tup_upd`` and rows/s per variant, then
   ``EXPLAIN ANALYZE`` of the guide's and discovery's queries on
   ``last_heartbeat`` for the guide's btree and for BRIN.

The exit status is 1 when a target is missed and ``--strict`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks import _support as support
from benchmarks import bench_api
from benchmarks import bench_repository as repo_bench
from omninode_bridge.migrations import runner
from omninode_bridge.services import PostgresClient
from omninode_bridge.services.sql import load_queries
from omninode_bridge.services.tokens import Scope, TokenService

RATIO_TARGET = 3.0
PERIOD_S = 30.0  # every tool heartbeats once per 30 s
HOLD_SHARE = 0.98  # of the target rate, to count as sustained
MAX_LAG_S = 1.0
SIDES = ("coalesced", "single")
HB_INDEX = repo_bench.HB_INDEX
TOOLS_Q = load_queries("tool_registrations.sql")
DISCOVERY_Q = load_queries("discovery.sql")


# -- seeding -----------------------------------------------------------------------------


async def seed_owned(dsn: str, n: int, *, any_ids: bool = False) -> tuple[str, float]:
    """Migrate, seed ``n`` tools, make a ``write`` token own them all; (secret, seconds).

    Seeds with bench_repository's ``seed`` (ids ``bench-tool-%07d``, as bench_api's
    load generators pick them) or, when ``any_ids`` and ``benchmarks.bench_scale``
    exists, with its faster ``seed(dsn, n)`` (COPY; ids of its own).
    """
    await runner.upgrade(dsn)
    started = time.perf_counter()
    scale: Any = None
    if any_ids:
        with contextlib.suppress(ModuleNotFoundError):
            scale = importlib.import_module("benchmarks.bench_scale")
    if scale is not None and hasattr(scale, "seed"):
        await scale.seed(dsn, n)
    else:
        await repo_bench.seed(dsn, n, random.Random(n))
    seconds = time.perf_counter() - started
    async with PostgresClient(repo_bench.client_settings(1), dsn=dsn) as client:
        token = await TokenService(client).create(f"bench-{uuid.uuid4().hex[:8]}", Scope.WRITE)
        await client.execute(
            "INSERT INTO tool_owners (tool_id, owner) SELECT tool_id, $1 FROM tool_registrations "
            "ON CONFLICT (tool_id) DO UPDATE SET owner = EXCLUDED.owner",
            f"token:{token.info.id}",
        )
    await repo_bench.sql(dsn, "VACUUM ANALYZE")
    return token.secret, seconds


# -- part 1: single heartbeats over HTTP ---------------------------------------------------


@dataclass
class Servers:
    procs: dict[str, support.Proc] = field(default_factory=dict)

    def stop(self) -> None:
        for proc in self.procs.values():
            support.stop_process(proc)

    def check(self) -> None:
        support.check_alive(*self.procs.values())


def start_servers(dsn: str, work: Path, sides: tuple[str, ...]) -> Servers:
    servers = Servers()
    try:
        for side in sides:
            env = support.clean_env(DATABASE_URL=dsn, **support.QUIET_CHECKS)
            if side == "single":
                env["TOOLREG_HEARTBEAT_BATCH_WINDOW_MS"] = "0"
            port = support.free_port()
            command = [support.TOOLREG, "serve", "--port", str(port), "--no-migrate"]
            command += ["--log-level", "warning"]
            servers.procs[side] = support.start_process(side, command, env, port, work)
        for proc in servers.procs.values():
            support.wait_ready(proc)
    except BaseException:
        servers.stop()
        raise
    return servers


@dataclass
class HttpResult(bench_api.PairedLoads):
    sides = SIDES
    runs: dict[str, list[bench_api.Load]] = field(default_factory=lambda: {s: [] for s in SIDES})


def bench_http(args: argparse.Namespace, server: support.Server, work: Path) -> HttpResult:
    name = f"toolreg_hb_http_{uuid.uuid4().hex[:8]}"
    dsn = asyncio.run(server.create(name))
    print(f"part 1: seeding {args.tools:,} tools...", flush=True)
    token, seconds = asyncio.run(seed_owned(dsn, args.tools))
    print(f"  seeded in {seconds:.1f} s", flush=True)
    servers = start_servers(dsn, work, SIDES)
    try:
        path = f"/v1/tools/{support.tool_id(0)}/heartbeat"
        for proc in servers.procs.values():
            assert support.request(proc.url, "POST", path, token)[0] == 204, proc.name
            assert support.request(proc.url, "POST", path)[0] == 401, proc.name
        client = args.client
        if client == "auto":
            client = "wrk" if shutil.which("wrk") else "python"
        script = work / "bench_api.lua"
        script.write_text(bench_api.WRK_SCRIPT)
        postmaster = asyncio.run(support.find_postmaster(dsn))
        spec = bench_api.LoadSpec(
            client, args.connections, args.threads, args.tools, token, script, postmaster
        )
        print(
            f"  load: {client}, {args.connections} connections, {args.seconds:g} s a run, "
            f"{args.rounds} rounds alternating after a {args.warmup:g} s warm-up",
            flush=True,
        )
        print(support.machine_load("before"), flush=True)
        for side in SIDES:
            proc = servers.procs[side]
            bench_api.run_load(spec, proc.url, "heartbeat", args.warmup, proc.process.pid)
        result = HttpResult()
        for round_no in range(1, args.rounds + 1):
            for side in SIDES:
                proc = servers.procs[side]
                load = bench_api.run_load(
                    spec, proc.url, "heartbeat", args.seconds, proc.process.pid
                )
                result.runs[side].append(load)
                print(f"  round {round_no} {side:<9} {bench_api.describe(load)}", flush=True)
        print(support.machine_load("after"), flush=True)
        servers.check()
        return result
    finally:
        servers.stop()
        asyncio.run(server.drop(name))


# -- part 2: sustained batches at scale ------------------------------------------------------


@dataclass
class Sustained:
    tools: int
    seed_seconds: float
    target_rate: float
    rows: int
    seconds: float
    max_lag_s: float
    p50_ms: float
    p99_ms: float
    hot_share: float
    errors: int

    planned_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Rows per second over the planned run (a run that finished early was not faster)."""
        return self.rows / max(self.seconds, self.planned_seconds)

    @property
    def held(self) -> bool:
        return (
            self.errors == 0
            and self.rate >= HOLD_SHARE * self.target_rate
            and self.max_lag_s <= MAX_LAG_S
        )


async def paced_batches(
    url: str, token: str, ids: list[str], rate: float, seconds: float, batch: int, clients: int
) -> tuple[int, float, float, list[float], int]:
    """POST /v1/heartbeats at ``rate`` ids/s; (rows, seconds, max lag, latencies, errors)."""
    per_batch = batch / rate
    total = max(1, int(rate * seconds) // batch)
    rng = random.Random(0)
    order = ids[:]
    rng.shuffle(order)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for k in range(total):
        queue.put_nowait(k)
    latencies: list[float] = []
    rows = errors = 0
    max_lag = 0.0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        clock = time.perf_counter
        started = clock()

        async def worker() -> None:
            nonlocal rows, errors, max_lag
            while True:
                try:
                    k = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                due = started + k * per_batch
                if (wait := due - clock()) > 0:
                    await asyncio.sleep(wait)
                max_lag = max(max_lag, clock() - due)
                first = k * batch
                chunk = [order[(first + j) % len(order)] for j in range(batch)]
                sent = clock()
                response = await http.post(
                    "/v1/heartbeats", json={"tool_ids": chunk}, headers=headers
                )
                latencies.append(clock() - sent)
                if response.status_code != 200:
                    errors += 1
                    continue
                rows += int(response.json()["updated"])

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = clock() - started
    return rows, elapsed, max_lag, latencies, errors


def bench_sustained(args: argparse.Namespace, server: support.Server, work: Path) -> Sustained:
    name = f"toolreg_hb_scale_{uuid.uuid4().hex[:8]}"
    dsn = asyncio.run(server.create(name))
    print(f"part 2: seeding {args.scale_tools:,} tools...", flush=True)
    token, seed_seconds = asyncio.run(seed_owned(dsn, args.scale_tools, any_ids=True))
    print(
        f"  seeded in {seed_seconds:.1f} s ({args.scale_tools / seed_seconds:,.0f} tools/s)",
        flush=True,
    )
    ids = [r["tool_id"] for r in asyncio.run(fetch(dsn, "SELECT tool_id FROM tool_registrations"))]
    servers = start_servers(dsn, work, ("coalesced",))
    try:
        url = servers.procs["coalesced"].url
        rate = args.scale_tools / PERIOD_S
        print(
            f"  POST /v1/heartbeats: {args.batch} ids a request, {rate:,.0f} ids/s for "
            f"{args.scale_seconds:g} s, at most {args.scale_clients} in flight",
            flush=True,
        )
        print(support.machine_load("before"), flush=True)
        before = asyncio.run(repo_bench.flushed_hot_counters(dsn))
        rows, seconds, lag, latencies, errors = asyncio.run(
            paced_batches(url, token, ids, rate, args.scale_seconds, args.batch, args.scale_clients)
        )
        after = asyncio.run(repo_bench.flushed_hot_counters(dsn))
        print(support.machine_load("after"), flush=True)
        servers.check()
        hot, _ = repo_bench.hot_share(before, after)
        result = Sustained(
            tools=args.scale_tools,
            seed_seconds=seed_seconds,
            target_rate=rate,
            rows=rows,
            seconds=seconds,
            max_lag_s=lag,
            p50_ms=support.pct(latencies or [0.0], 50) * 1000,
            p99_ms=support.pct(latencies or [0.0], 99) * 1000,
            hot_share=hot,
            errors=errors,
            planned_seconds=args.scale_seconds,
        )
        print(
            f"  {result.rate:,.0f} rows/s (target {rate:,.0f}), max lag {lag:.2f} s, "
            f"p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, HOT {hot:.0f}%, "
            f"errors {errors}",
            flush=True,
        )
        return result
    finally:
        servers.stop()
        asyncio.run(server.drop(name))


async def fetch(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


# -- part 3: HOT share per index and fillfactor ----------------------------------------------

BTREE = f"CREATE INDEX {HB_INDEX} ON tool_registrations (last_heartbeat DESC)"
BRIN = f"CREATE INDEX {HB_INDEX} ON tool_registrations USING brin (last_heartbeat)"
VARIANTS: list[tuple[str, str, int]] = [
    ("btree (the guide's)", BTREE, 100),
    ("btree, fillfactor 80", BTREE, 80),
    ("BRIN", BRIN, 100),
    ("BRIN, fillfactor 80", BRIN, 80),
    ("BRIN, fillfactor 70", BRIN, 70),
]
EXPLAINED = ("btree (the guide's)", "BRIN, fillfactor 80")


@dataclass
class HotResult:
    variant: str
    rows_per_s: float
    hot_share: float
    updates: int
    table_mb: float
    plans: dict[str, str] = field(default_factory=dict)


async def explain_all(dsn: str) -> dict[str, str]:
    """EXPLAIN ANALYZE of the queries that filter on last_heartbeat, as the code runs them."""
    conn = await asyncpg.connect(dsn, timeout=60)
    try:
        since = float(await conn.fetchval("SELECT extract(epoch FROM now())::float8 - 1"))
        queries: list[tuple[str, str, tuple[Any, ...]]] = [
            ("get_healthy_tools (TTL 300 s)", TOOLS_Q["get_healthy_tools"], (300.0,)),
            ("get_healthy_tools (1 s)", TOOLS_Q["get_healthy_tools"], (1.0,)),
            ("count_healthy (TTL 300 s)", TOOLS_Q["count_healthy"], (300.0,)),
            (
                "find_tools (max_age 60 s, page of 100)",
                TOOLS_Q["find_tools"],
                (None, None, 60.0, None, None, 100),
            ),
            ("discovery heartbeats_since (1 s ago)", DISCOVERY_Q["heartbeats_since"], (since,)),
        ]
        plans = {}
        for label, query, args in queries:
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + query, *args
            )
            plans[label] = "\n".join(r[0] for r in rows)
        return plans
    finally:
        await conn.close()


async def drain(pool: asyncpg.Pool, queue: list[list[str]]) -> None:
    while queue:
        await pool.fetch(TOOLS_Q["update_heartbeats"], queue.pop(), None)


async def heartbeat_passes(dsn: str, ids: list[str], passes: int, clients: int) -> float:
    """Every tool heartbeated ``passes`` times in batches on ``clients`` connections; rows/s."""
    batches = [ids[i : i + 1000] for i in range(0, len(ids), 1000)]
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)
    try:
        started = time.perf_counter()
        for _ in range(passes):
            queue = list(reversed(batches))
            await asyncio.gather(*(drain(pool, queue) for _ in range(clients)))
        return passes * len(ids) / (time.perf_counter() - started)
    finally:
        await pool.close()


async def bench_hot(args: argparse.Namespace, server: support.Server) -> list[HotResult]:
    base = f"toolreg_hb_hot_{uuid.uuid4().hex[:8]}"
    dsn = await server.create(base)
    print(f"part 3: seeding {args.hot_tools:,} tools...", flush=True)
    await runner.upgrade(dsn)
    ids, seconds, _ = await repo_bench.seed(dsn, args.hot_tools, random.Random(args.hot_tools))
    print(f"  seeded in {seconds:.1f} s", flush=True)
    results: list[HotResult] = []
    try:
        for label, index, fillfactor in VARIANTS:
            name = f"{base}_v{len(results)}"
            copy = await server.create(name, template=base)
            try:
                conn = await asyncpg.connect(copy, timeout=30)
                try:
                    await conn.execute(f"DROP INDEX {HB_INDEX}")
                    await conn.execute(index)
                    if fillfactor != 100:
                        await conn.execute(
                            f"ALTER TABLE tool_registrations SET (fillfactor = {fillfactor})"
                        )
                        await conn.execute("VACUUM FULL tool_registrations")
                    await conn.execute("VACUUM ANALYZE tool_registrations")
                finally:
                    await conn.close()
                before = await repo_bench.flushed_hot_counters(copy)
                rate = await heartbeat_passes(copy, ids, args.hot_passes, args.hot_clients)
                after = await repo_bench.flushed_hot_counters(copy)
                hot, updates = repo_bench.hot_share(before, after)
                size = await repo_bench.sql(
                    copy, "SELECT pg_table_size('tool_registrations')::float8 / 1048576"
                )
                result = HotResult(label, rate, hot, updates, float(size))
                if label in EXPLAINED:
                    await repo_bench.sql(copy, "ANALYZE tool_registrations")
                    result.plans = await explain_all(copy)
                results.append(result)
                print(
                    f"  {label:<22} {rate:>9,.0f} rows/s  HOT {hot:5.1f}% of {updates:,}  "
                    f"table {size:,.0f} MB",
                    flush=True,
                )
            finally:
                await server.drop(name)
    finally:
        await server.drop(base)
    return results


# -- report ----------------------------------------------------------------------------------


def http_table(r: HttpResult) -> str:
    lines = [
        "| server | req/s (median) | p50 ms | p99 ms | server CPU us/req | PostgreSQL CPU us/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side in SIDES:
        lines.append(
            f"| {side} | {r.median(side, 'rps'):,.0f} | {r.median(side, 'p50_ms'):.1f} "
            f"| {r.median(side, 'p99_ms'):.1f} | {r.median(side, 'server_cpu_us'):.0f} "
            f"| {r.median(side, 'db_cpu_us'):.0f} |"
        )
    return "\n".join(lines)


def hot_table(results: list[HotResult]) -> str:
    lines = [
        "| `last_heartbeat` index | batch heartbeats rows/s | HOT share | table MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {r.rows_per_s:,.0f} | {r.hot_share:.1f}% | {r.table_mb:,.0f} |"
        )
    return "\n".join(lines)


def targets_table(http: HttpResult | None, sustained: Sustained | None) -> tuple[str, bool]:
    lines = ["| target | figure | result |", "| --- | --- | --- |"]
    ok = True
    if http is not None:
        passed = http.ratio >= RATIO_TARGET and http.clean
        ok &= passed
        lines.append(
            f"| single-heartbeat HTTP throughput, coalesced >= {RATIO_TARGET:g}x one statement "
            f"per request | {http.ratio:.2f}x ({http.median('coalesced', 'rps'):,.0f} vs "
            f"{http.median('single', 'rps'):,.0f} req/s; rounds "
            f"{' / '.join(f'{x:.2f}' for x in http.round_ratios)}) "
            f"| {'pass' if passed else 'miss'} |"
        )
    if sustained is not None:
        ok &= sustained.held
        lines.append(
            f"| {sustained.tools:,} tools x 1 heartbeat / 30 s = {sustained.target_rate:,.0f} "
            f"rows/s through `POST /v1/heartbeats` | {sustained.rate:,.0f} rows/s, max lag "
            f"{sustained.max_lag_s:.2f} s, p99 {sustained.p99_ms:.0f} ms, HOT "
            f"{sustained.hot_share:.0f}% | {'pass' if sustained.held else 'miss'} |"
        )
    return "\n".join(lines), ok


def main_run(args: argparse.Namespace) -> int:
    server = support.Server()
    asyncio.run(server.start())
    http = sustained = None
    hot: list[HotResult] = []
    try:
        print(f"server: {asyncio.run(server.admin('SELECT version()'))}", flush=True)
        with tempfile.TemporaryDirectory(prefix="toolreg-hb-bench-", dir="/tmp") as tmp:
            if args.tools:
                http = bench_http(args, server, Path(tmp))
            if args.scale_tools:
                sustained = bench_sustained(args, server, Path(tmp))
        if args.hot_tools:
            hot = asyncio.run(bench_hot(args, server))
    finally:
        asyncio.run(server.stop())
    print()
    if http is not None:
        print(http_table(http))
        print()
    if hot:
        print(hot_table(hot))
        print()
        for r in hot:
            for label, plan in r.plans.items():
                print(f"--- {r.variant}: {label}\n{plan}\n")
    table, ok = targets_table(http, sustained)
    print(table)
    return 1 if args.strict and not ok else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_heartbeat", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tools", type=int, default=10_000, help="part 1 (0: skip)")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--scale-tools", type=int, default=1_000_000, help="part 2 (0: skip)")
    parser.add_argument("--scale-seconds", type=float, default=30.0)
    parser.add_argument("--scale-clients", type=int, default=4, help="requests in flight")
    parser.add_argument("--batch", type=int, default=1000, help="ids per POST /v1/heartbeats")
    parser.add_argument("--hot-tools", type=int, default=100_000, help="part 3 (0: skip)")
    parser.add_argument("--hot-passes", type=int, default=3)
    parser.add_argument("--hot-clients", type=int, default=2)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    for name in ("tools", "scale_tools", "hot_tools"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    for name in ("connections", "rounds", "scale_clients", "batch", "hot_passes", "hot_clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 1 <= args.batch <= 10_000:
        parser.error("--batch must be 1-10000 (the route's limit)")
    if args.seconds <= 0 or args.scale_seconds <= 0:
        parser.error("--seconds and --scale-seconds must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return main_run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
