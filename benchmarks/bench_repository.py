"""ToolRegistrationRepository against the raw asyncpg statement, in the same run.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_repository [--sizes 10000 100000] [--seconds N]

With ``DATABASE_URL`` set it creates throwaway databases on that server and
drops them after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after.

For every size it seeds ``tool_registrations`` through the repository's
``create_registrations`` (batches of 1000), runs ``VACUUM ANALYZE``, and copies
the database into a second one where the guide's ``last_heartbeat`` index is
dropped (only the batch heartbeat runs there, to show the HOT effect).

Every operation is timed on two sides that see the same database, the same
SQL text (the repository's own queries) and a pool of the same size:

* ours: the repository method on a ``PostgresClient`` (orjson JSONB codec,
  error translation, ``ModelToolRegistration`` built per row);
* raw: a plain ``asyncpg`` pool without codecs; ``fetchrow``/``execute``/
  ``fetch`` with JSON parameters encoded by orjson, and for the multi-row
  queries the jsonb text columns decoded with orjson after the fetch.

Rounds alternate (ours, raw, ours, raw, ...) after one untimed warm-up per
side; each round runs ``--seconds`` (at least one call). The table shows the
median of the rounds for each side and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationCreate, NodeType
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.tool_registration_repository import Q
from omninode_bridge.settings import Settings

HB_INDEX = "idx_tool_registrations_last_heartbeat"
SEED_BATCH = 1000
HEARTBEAT_BATCH = 1000
CONCURRENCY = 8
RARE = ("operations", ["transcode"])  # about 1% of the tools
COMMON = ("operations", ["read"])  # about 50% of the tools
OTHER_OPERATIONS = [
    "write",
    "list",
    "delete",
    "stat",
    "search",
    "validate",
    "convert",
    "compress",
    "hash",
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "render",
    "index",
    "summarize",
    "classify",
    "translate",
]
FORMATS = ["json", "yaml", "csv", "parquet", "xml", "pdf", "png", "txt", "md", "avro"]
TEAMS = ["platform", "data", "ml", "search", "media", "security", "infra", "billing"]
NODE_TYPES = [NodeType.EFFECT, NodeType.COMPUTE, NodeType.REDUCER, NodeType.ORCHESTRATOR]

Call = Callable[[int], Awaitable[int]]  # gets a call number, returns the units it did


# -- the data ------------------------------------------------------------------


def tool_payload(rng: random.Random, tool_id: str) -> dict[str, Any]:
    """A realistic registration: 2-6 operations, formats, limits, endpoints, metadata."""
    operations = rng.sample(OTHER_OPERATIONS, rng.randint(1, 5))
    if rng.random() < 0.5:
        operations.insert(0, "read")
    if rng.random() < 0.01:
        operations.append("transcode")
    host = f"http://{tool_id}.tools.svc.cluster.local:8080"
    return {
        "tool_id": tool_id,
        "node_type": rng.choices(NODE_TYPES, weights=[4, 4, 1, 1])[0],
        "capabilities": {
            "operations": operations,
            "formats": rng.sample(FORMATS, rng.randint(1, 4)),
            "max_file_size": rng.choice([1_000_000, 5_000_000, 10_000_000, 50_000_000]),
            "streaming": rng.random() < 0.3,
            "version": f"{rng.randint(1, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        },
        "endpoints": {op: f"{host}/v1/{op}" for op in operations},
        "metadata": {
            "owner": rng.choice(TEAMS),
            "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
            "tags": rng.sample(["beta", "gpu", "batch", "realtime", "internal", "pii"], 2),
            "description": f"{operations[0]} tool #{tool_id[-6:]} maintained by the team",
        },
        "health_endpoint": f"{host}/health",
    }


def make_models(rng: random.Random, ids: Sequence[str]) -> list[ModelToolRegistrationCreate]:
    return [ModelToolRegistrationCreate(**tool_payload(rng, tool_id)) for tool_id in ids]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def raw_create_args(m: ModelToolRegistrationCreate) -> tuple[Any, ...]:
    return (
        m.tool_id,
        m.node_type.value,
        dumps(m.capabilities),
        dumps(m.endpoints),
        dumps(m.metadata),
        m.health_endpoint,
    )


def decode_rows(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    """The raw side's decoding: every jsonb text column through orjson."""
    loads = orjson.loads
    return [
        (row, loads(row["capabilities"]), loads(row["endpoints"]), loads(row["metadata"]))
        for row in rows
    ]


# -- timing --------------------------------------------------------------------


@dataclass
class Result:
    size: int
    op: str
    conns: int
    unit: str
    target: float | None
    ours: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    rows_per_call: int | None = None
    note: str = ""

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw)

    @property
    def ratio(self) -> float:
        return self.ours_median / self.raw_median

    @property
    def paired(self) -> list[float]:
        return [o / r for o, r in zip(self.ours, self.raw, strict=True)]

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


async def run_for(call: Call, conns: int, seconds: float, min_calls: int) -> float:
    """Units per second of ``call`` on ``conns`` concurrent workers for about ``seconds``."""
    counter = itertools.count()
    units = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal units
        done = 0
        while done < min_calls or time.perf_counter() < deadline:
            got = await call(next(counter))
            if got == 0:  # the call's prepared inputs ran out
                return
            units += got
            done += 1

    await asyncio.gather(*(worker() for _ in range(conns)))
    return units / (time.perf_counter() - started)


async def compare(
    result: Result,
    ours: Call,
    raw: Call,
    *,
    seconds: float,
    rounds: int,
    warmup_calls: int,
    between: Callable[[], Awaitable[None]] | None = None,
) -> Result:
    """Warm both sides up, then alternate timed rounds: ours, raw, ours, raw, ..."""
    for call in (ours, raw):
        await run_for(call, result.conns, min(0.3, seconds), warmup_calls)
        if between is not None:
            await between()
    for _ in range(rounds):
        for side, call in (("ours", ours), ("raw", raw)):
            rate = await run_for(call, result.conns, seconds, 1)
            getattr(result, side).append(rate)
            if between is not None:
                await between()
    print(
        f"  {result.op:<34} {result.conns}c  ours {result.ours_median:>10.1f}"
        f"  raw {result.raw_median:>10.1f} {result.unit:<6} ratio {result.ratio:.3f}",
        flush=True,
    )
    return result


# -- databases -----------------------------------------------------------------


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


class Server:
    """The server the benchmark runs on: DATABASE_URL's, or a fresh embedded one."""

    def __init__(self) -> None:
        self.url = os.environ.get("DATABASE_URL") or None
        self.data_dir: Path | None = None
        self.admin_dsn = ""
        self.created: list[str] = []

    async def start(self) -> None:
        if self.url:
            host = urlsplit(self.url).hostname
            if host not in (None, "", "localhost", "127.0.0.1", "::1"):
                print(f"warning: DATABASE_URL host {host} is not loopback", file=sys.stderr)
            self.admin_dsn = with_database(self.url, "postgres")
            return
        self.data_dir = Path(tempfile.mkdtemp(prefix="toolreg-bench-", dir="/tmp"))
        self.data_dir.chmod(0o755)
        server = await start_embedded(self.data_dir, "postgres")
        self.admin_dsn = server.dsn("postgres")

    async def admin(self, sql: str) -> Any:
        conn = await asyncpg.connect(self.admin_dsn, timeout=30)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def create(self, name: str, template: str | None = None) -> str:
        if template is None:
            await self.admin(f'CREATE DATABASE "{name}"')
        else:
            version = int(await self.admin("SHOW server_version_num"))
            strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
            await self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        self.created.append(name)
        return with_database(self.admin_dsn, name)

    async def drop(self, name: str) -> None:
        await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    async def stop(self) -> None:
        for name in list(self.created):
            try:
                await self.drop(name)
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"warning: could not drop {name}: {exc}", file=sys.stderr)
        if self.data_dir is not None:
            await stop_embedded(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)


async def sql(dsn: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await conn.fetchval(statement, *args)
    finally:
        await conn.close()


def client_settings(conns: int) -> Settings:
    return Settings(
        pool_min_size=conns,
        pool_max_size=conns,
        connect_timeout=30,
        command_timeout=300,
        statement_cache_size=100,
    )


class Sides:
    """Our client and repository, and a raw pool, both with ``conns`` connections."""

    def __init__(self, dsn: str, conns: int) -> None:
        self.dsn = dsn
        self.conns = conns
        self.client = PostgresClient(client_settings(conns), dsn=dsn)
        self.repo = ToolRegistrationRepository(self.client)
        self.raw: asyncpg.Pool = None  # type: ignore[assignment]

    async def __aenter__(self) -> Sides:
        await self.client.connect()
        self.raw = await asyncpg.create_pool(
            self.dsn,
            min_size=self.conns,
            max_size=self.conns,
            command_timeout=300,
            statement_cache_size=100,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.raw.close()


async def hot_counters(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relname = 'tool_registrations'"
        )
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


# -- the operations ------------------------------------------------------------


@dataclass
class Inputs:
    """What the timed calls read: shuffled ids, heartbeat batches, unregistered tools."""

    ids: list[str]
    batches: list[list[str]]
    new_models: list[ModelToolRegistrationCreate]


def point_calls(s: Sides, inp: Inputs) -> dict[str, tuple[Call, Call]]:
    repo, pool, ids, new = s.repo, s.raw, inp.ids, inp.new_models
    n, limit = len(ids), len(new)
    q_get, q_create, q_hb = Q["get_registration"], Q["create_registration"], Q["update_heartbeat"]

    async def ours_get(i: int) -> int:
        await repo.get_registration(ids[i % n])
        return 1

    async def raw_get(i: int) -> int:
        await pool.fetchrow(q_get, ids[i % n])
        return 1

    async def ours_create(i: int) -> int:
        if i >= limit:
            return 0
        await repo.create_registration(new[i])
        return 1

    async def raw_create(i: int) -> int:
        if i >= limit:
            return 0
        await pool.fetchrow(q_create, *raw_create_args(new[i]))
        return 1

    async def ours_hb(i: int) -> int:
        await repo.update_heartbeat(ids[i % n])
        return 1

    async def raw_hb(i: int) -> int:
        await pool.execute(q_hb, ids[i % n], None)
        return 1

    return {
        "get_registration": (ours_get, raw_get),
        "create_registration": (ours_create, raw_create),
        "update_heartbeat": (ours_hb, raw_hb),
    }


def batch_heartbeat_calls(s: Sides, inp: Inputs) -> tuple[Call, Call]:
    repo, pool, batches = s.repo, s.raw, inp.batches
    n = len(batches)
    q = Q["update_heartbeats"]

    async def ours(i: int) -> int:
        batch = batches[i % n]
        await repo.update_heartbeats(batch)
        return len(batch)

    async def raw(i: int) -> int:
        batch = batches[i % n]
        await pool.fetch(q, batch, None)
        return len(batch)

    return ours, raw


def capability_calls(s: Sides, key: str, value: Any) -> tuple[Call, Call]:
    repo, pool = s.repo, s.raw
    q = Q["find_by_capability"]

    async def ours(i: int) -> int:
        await repo.find_by_capability(key, value)
        return 1

    async def raw(i: int) -> int:
        decode_rows(await pool.fetch(q, dumps({key: value})))
        return 1

    return ours, raw


def list_all_calls(s: Sides) -> tuple[Call, Call]:
    repo, pool = s.repo, s.raw
    q = Q["list_all"]

    async def ours(i: int) -> int:
        await repo.list_all_registrations()
        return 1

    async def raw(i: int) -> int:
        decode_rows(await pool.fetch(q))
        return 1

    return ours, raw


async def check_equivalence(s: Sides, inp: Inputs) -> tuple[int, int]:
    """Both sides see the same rows (sanity, untimed); the rare and common counts."""
    tool_id = inp.ids[0]
    ours_one = await s.repo.get_registration(tool_id)
    raw_one = await s.raw.fetchrow(Q["get_registration"], tool_id)
    assert ours_one is not None
    assert raw_one is not None
    assert ours_one.capabilities == orjson.loads(raw_one["capabilities"])
    counts = []
    for key, value in (RARE, COMMON):
        ours_rows = await s.repo.find_by_capability(key, value)
        raw_rows = decode_rows(await s.raw.fetch(Q["find_by_capability"], dumps({key: value})))
        assert [m.tool_id for m in ours_rows] == [r[0]["tool_id"] for r in raw_rows]
        counts.append(len(ours_rows))
    missing = await s.repo.update_heartbeats(inp.batches[0])
    assert missing == []
    return counts[0], counts[1]


# -- one size ------------------------------------------------------------------


@dataclass
class SizeInfo:
    size: int
    seed_seconds: float
    rare_rows: int = 0
    common_rows: int = 0
    hot_percent: dict[str, float] = field(default_factory=dict)

    @property
    def seed_rows_per_s(self) -> float:
        return self.size / self.seed_seconds


async def seed(dsn: str, size: int, rng: random.Random) -> tuple[list[str], float]:
    """Register ``size`` tools through ``create_registrations``; ids and seconds taken."""
    ids = [f"bench-tool-{i:07d}" for i in range(size)]
    started = time.perf_counter()
    async with PostgresClient(client_settings(1), dsn=dsn) as client:
        repo = ToolRegistrationRepository(client)
        for start in range(0, size, SEED_BATCH):
            batch = make_models(rng, ids[start : start + SEED_BATCH])
            stored = await repo.create_registrations(batch)
            assert len(stored) == len(batch)
    elapsed = time.perf_counter() - started
    await sql(dsn, "VACUUM ANALYZE")
    return ids, elapsed


async def bench_size(
    server: Server,
    size: int,
    new_models: list[ModelToolRegistrationCreate],
    seconds: float,
    rounds: int,
    results: list[Result],
) -> SizeInfo:
    rng = random.Random(size)
    tag = uuid.uuid4().hex[:8]
    main_name, nohb_name = f"toolreg_bench_{tag}", f"toolreg_bench_{tag}_nohb"
    dsn = await server.create(main_name)
    await runner.upgrade(dsn)
    print(f"size {size}: seeding through create_registrations...", flush=True)
    ids, seed_seconds = await seed(dsn, size, rng)
    info = SizeInfo(size, seed_seconds)
    print(f"  seeded in {seed_seconds:.1f}s ({info.seed_rows_per_s:.0f} rows/s)", flush=True)
    # The copy without the guide's last_heartbeat index (taken before any timed work).
    nohb_dsn = await server.create(nohb_name, template=main_name)
    await sql(nohb_dsn, f"DROP INDEX {HB_INDEX}")
    await sql(nohb_dsn, "VACUUM ANALYZE tool_registrations")

    shuffled = ids[:]
    rng.shuffle(shuffled)
    batches = [
        shuffled[i : i + HEARTBEAT_BATCH]
        for i in range(0, len(shuffled) - HEARTBEAT_BATCH + 1, HEARTBEAT_BATCH)
    ]
    inp = Inputs(shuffled, batches, new_models)
    kw: dict[str, Any] = {"seconds": seconds, "rounds": rounds}

    def result(op: str, conns: int, unit: str, target: float | None, note: str = "") -> Result:
        r = Result(size, op, conns, unit, target, note=note)
        results.append(r)
        return r

    async def vacuum() -> None:
        await sql(dsn, "VACUUM ANALYZE tool_registrations")

    async def drop_new() -> None:
        await sql(dsn, "DELETE FROM tool_registrations WHERE tool_id LIKE 'bench-new-%'")

    # Point operations: 1 connection sequential, then 8 concurrent on 8 connections.
    for conns in (1, CONCURRENCY):
        async with Sides(dsn, conns) as s:
            if conns == 1:
                info.rare_rows, info.common_rows = await check_equivalence(s, inp)
                print(
                    f"  rare capability: {info.rare_rows} rows, common: {info.common_rows} rows",
                    flush=True,
                )
            calls = point_calls(s, inp)
            await compare(
                result("get_registration", conns, "ops/s", 0.9),
                *calls["get_registration"],
                warmup_calls=6,
                **kw,
            )
            await drop_new()
            await compare(
                result("create_registration", conns, "ops/s", 0.9),
                *calls["create_registration"],
                warmup_calls=6,
                between=drop_new,
                **kw,
            )
            await vacuum()
            await compare(
                result("update_heartbeat", conns, "ops/s", 0.9),
                *calls["update_heartbeat"],
                warmup_calls=6,
                **kw,
            )
            await vacuum()

    # Queries that decode rows into models: 1 connection.
    async with Sides(dsn, 1) as s:
        for label, (key, value), rows in (
            ("find_by_capability rare", RARE, info.rare_rows),
            ("find_by_capability common", COMMON, info.common_rows),
        ):
            r = result(label, 1, "qps", 0.7, note=f"{rows} rows")
            r.rows_per_call = rows
            # Six executions per side first: past them the prepared statement may
            # switch to its generic plan, so both sides are timed in that state.
            await compare(r, *capability_calls(s, key, value), warmup_calls=6, **kw)
        r = result("list_all_registrations", 1, "qps", 0.7, note=f"{size} rows")
        r.rows_per_call = size
        await compare(r, *list_all_calls(s), warmup_calls=1, **kw)

    # Batch heartbeat (1000 ids per call), with and without the last_heartbeat index.
    for label, target_dsn in (("with index", dsn), ("index dropped", nohb_dsn)):
        await sql(target_dsn, "VACUUM ANALYZE tool_registrations")
        await asyncio.sleep(1.1)  # let backends flush their statistics
        upd0, hot0 = await hot_counters(target_dsn)
        async with Sides(target_dsn, 1) as s:
            await compare(
                result(
                    f"update_heartbeats x{HEARTBEAT_BATCH} ({label})",
                    1,
                    "rows/s",
                    0.8 if target_dsn == dsn else None,
                ),
                *batch_heartbeat_calls(s, inp),
                warmup_calls=2,
                **kw,
            )
        await asyncio.sleep(1.1)
        upd1, hot1 = await hot_counters(target_dsn)
        hot = 100.0 * (hot1 - hot0) / max(1, upd1 - upd0)
        info.hot_percent[label] = hot
        results[-1].note = f"HOT {hot:.0f}% of {upd1 - upd0} row updates"
        print(f"    HOT updates {label}: {hot:.1f}% of {upd1 - upd0}", flush=True)

    await server.drop(nohb_name)
    await server.drop(main_name)
    return info


# -- report --------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def table(results: list[Result]) -> str:
    lines = [
        "| size | operation | conns | unit | ours | raw | ratio | paired ratios "
        "| target | result |",
        "|---:|---|---:|---|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        paired = r.paired
        verdict = "-" if r.passed is None else ("pass" if r.passed else "**FAIL**")
        target = "-" if r.target is None else f">= {r.target}"
        op = f"{r.op} ({r.note})" if r.note else r.op
        lines.append(
            f"| {r.size} | {op} | {r.conns} | {r.unit} | {fmt(r.ours_median)} "
            f"| {fmt(r.raw_median)} | {r.ratio:.2f} | {min(paired):.2f}-{max(paired):.2f} "
            f"| {target} | {verdict} |"
        )
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    server = Server()
    results: list[Result] = []
    infos: list[SizeInfo] = []
    await server.start()
    try:
        version = await server.admin("SELECT version()")
        print(f"server: {version}", flush=True)
        print(
            f"client: Python {sys.version.split()[0]}, asyncpg {asyncpg.__version__}, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        count = int(args.create_per_second * args.seconds) + 1000
        new_models = make_models(random.Random(0), [f"bench-new-{i:07d}" for i in range(count)])
        for size in args.sizes:
            infos.append(
                await bench_size(server, size, new_models, args.seconds, args.rounds, results)
            )
    finally:
        await server.stop()
    elapsed = time.perf_counter() - started
    print()
    print(table(results))
    print()
    for info in infos:
        print(
            f"size {info.size}: seeded {info.seed_rows_per_s:,.0f} rows/s through "
            f"create_registrations; rare {info.rare_rows} rows, common {info.common_rows} rows; "
            + ", ".join(f"HOT {k}: {v:.0f}%" for k, v in info.hot_percent.items())
        )
    print(f"total {elapsed:.0f}s")
    if args.json:
        payload = {
            "server": version,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "elapsed_s": elapsed,
            "sizes": [asdict(i) for i in infos],
            "results": [asdict(r) | {"ratio": r.ratio, "passed": r.passed} for r in results],
        }
        await asyncio.to_thread(write_json, Path(args.json), payload)
    failed = [r for r in results if r.passed is False]
    return 1 if failed and args.strict else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_repository", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per side")
    parser.add_argument(
        "--create-per-second",
        type=int,
        default=20_000,
        help="unregistered tools prepared per second of a round for create_registration",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a ratio misses its target"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
