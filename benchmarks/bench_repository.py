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

Timing alternates the two sides after an untimed warm-up. On one connection
every round alternates single calls (ours, raw, raw, ours, ...), each side's
throughput being its units over the time spent in its own calls; on eight
connections whole rounds alternate (ours, raw, ours, raw, ...). A round lasts
``--seconds`` (and at least one call); the table shows the median round of
each side, the ratio of the two medians, the spread of the per-round ratios,
and, on one connection, this process's CPU time per call on each side.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks._support import COMMON, RARE, Server, tool_payload
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.tool_registration_repository import Q
from omninode_bridge.settings import Settings

HB_INDEX = "idx_tool_registrations_last_heartbeat"
SEED_BATCH = 1000
HEARTBEAT_BATCH = 1000
CONCURRENCY = 8

Call = Callable[[int], Awaitable[int]]  # gets a call number, returns the units it did


# -- the data ------------------------------------------------------------------


def make_models(rng: random.Random, ids: Sequence[str]) -> list[ModelToolRegistrationCreate]:
    return [ModelToolRegistrationCreate(**tool_payload(rng, tool_id)) for tool_id in ids]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def raw_create_args(m: ModelToolRegistrationCreate) -> tuple[Any, ...]:
    """The parameters of the repository's ``create_registration`` statement, JSON as text."""
    return (
        m.tool_id,
        m.node_type.value,
        dumps(m.capabilities),
        dumps(m.endpoints),
        dumps(m.metadata),
        m.health_endpoint,
        None,  # owner
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
    # Client CPU seconds per call, per round (one-connection runs only).
    ours_cpu: list[float] = field(default_factory=list)
    raw_cpu: list[float] = field(default_factory=list)
    rows_per_call: int | None = None
    units_per_call: int = 1  # rows for the batch heartbeat
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

    @property
    def cpu_estimate(self) -> float | None:
        """The ratio if ours differed from raw only by its extra client CPU per call.

        One connection, calls in sequence: the server's work is the same SQL
        on both sides, so ``raw time per call / (that + extra CPU per call)``
        is an estimate of the ratio that server-side noise does not move.
        """
        if not self.ours_cpu:
            return None
        extra = statistics.median(self.ours_cpu) - statistics.median(self.raw_cpu)
        raw_call = self.units_per_call / self.raw_median
        return raw_call / (raw_call + extra)


@dataclass
class Timing:
    units: int
    calls: int
    seconds: float
    cpu_seconds: float | None = None  # this process's CPU time inside the calls

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def cpu_per_call(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds / max(1, self.calls)


async def run_for(
    call: Call, conns: int, seconds: float, min_calls: int, counter: Iterator[int]
) -> Timing:
    """Run ``call`` on ``conns`` concurrent workers for about ``seconds``.

    ``counter`` numbers the calls (each number picks the call's input).
    """
    units = calls = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal units, calls
        done = 0
        while done < min_calls or time.perf_counter() < deadline:
            got = await call(next(counter))
            if got == 0:  # the call's prepared inputs ran out
                break
            units += got
            done += 1
        calls += done

    await asyncio.gather(*(worker() for _ in range(conns)))
    return Timing(units, calls, time.perf_counter() - started)


MIN_ROUNDS = 5
SIDES = ("ours", "raw")


async def alternate_for(
    calls: dict[str, Call], seconds: float, min_pairs: int, counter: Iterator[int]
) -> dict[str, Timing]:
    """One connection each, one call at a time: ours, raw, raw, ours, ours, raw, ...

    Each side's throughput is its units over the time spent in its own calls,
    so background noise slower than one call falls on both sides alike. The
    process's CPU time inside each side's calls is kept too.
    """
    units = dict.fromkeys(SIDES, 0)
    done = dict.fromkeys(SIDES, 0)
    spent = dict.fromkeys(SIDES, 0.0)
    cpu = dict.fromkeys(SIDES, 0.0)
    clock, cpu_clock = time.perf_counter, time.process_time
    pairs = 0
    deadline = clock() + seconds
    while pairs < min_pairs or clock() < deadline:
        order = SIDES if pairs % 2 == 0 else SIDES[::-1]
        for side in order:
            cpu_started, started = cpu_clock(), clock()
            got = await calls[side](next(counter))
            spent[side] += clock() - started
            cpu[side] += cpu_clock() - cpu_started
            if got == 0:  # the prepared inputs ran out
                break
            units[side] += got
            done[side] += 1
        else:
            pairs += 1
            continue
        break
    return {k: Timing(units[k], done[k], spent[k], cpu[k]) for k in SIDES}


async def compare(
    result: Result,
    ours: Call,
    raw: Call,
    *,
    seconds: float,
    rounds: int,
    warmup_calls: int,
    min_calls: int = 1,
    between: Callable[[], Awaitable[None]] | None = None,
) -> Result:
    """Warm both sides up, then time them in alternation; record each round's throughput.

    One connection: every round alternates single calls (see ``alternate_for``).
    Several connections: rounds alternate, ours then raw, each round on all
    connections at once. A round lasts ``seconds`` and at least one call (per
    side, ``min_calls`` for spiky operations); when that makes a round longer
    than ``seconds``, the rounds are fewer (never under five) so that the
    operation keeps about the same time budget. Inputs are walked on from
    round to round; with ``between`` (which undoes a round's writes) every
    round starts again from the first input.
    """
    calls = {"ours": ours, "raw": raw}
    shared = itertools.count()
    per_side = {side: itertools.count() for side in SIDES}

    def numbers(side: str | None = None) -> Iterator[int]:
        if between is not None:
            return itertools.count()
        return shared if side is None else per_side[side]

    async def one_round(length: float, min_calls: int) -> dict[str, Timing]:
        if result.conns == 1:
            timings = await alternate_for(calls, length, min_calls, numbers())
            if between is not None:
                await between()
            return timings
        timings = {}
        for side in SIDES:
            timings[side] = await run_for(
                calls[side], result.conns, length, min_calls, numbers(side)
            )
            if between is not None:
                await between()
        return timings

    warm = await one_round(min(0.3, seconds), warmup_calls)
    slowest_call = max(t.seconds * result.conns / max(1, t.calls) for t in warm.values())
    round_length = max(seconds, slowest_call * min_calls)
    if round_length > seconds:
        rounds = max(min(rounds, MIN_ROUNDS), int(rounds * seconds / round_length))
    for _ in range(rounds):
        timings = await one_round(seconds, min_calls)
        result.ours.append(timings["ours"].rate)
        result.raw.append(timings["raw"].rate)
        ours_cpu, raw_cpu = timings["ours"].cpu_per_call, timings["raw"].cpu_per_call
        if ours_cpu is not None and raw_cpu is not None:
            result.ours_cpu.append(ours_cpu)
            result.raw_cpu.append(raw_cpu)
    print(
        f"  {result.op:<40} {result.conns}c  ours {result.ours_median:>10.1f}"
        f"  raw {result.raw_median:>10.1f} {result.unit:<6} ratio {result.ratio:.3f}"
        f"  ({rounds} rounds)",
        flush=True,
    )
    return result


# -- databases -----------------------------------------------------------------


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
    # create_registration: the same row from both sides (then removed).
    ours_model, raw_model = inp.new_models[0], inp.new_models[1]
    created = await s.repo.create_registration(ours_model)
    raw_row = await s.raw.fetchrow(Q["create_registration"], *raw_create_args(raw_model))
    assert raw_row is not None
    assert created.capabilities == ours_model.capabilities
    assert orjson.loads(raw_row["capabilities"]) == raw_model.capabilities
    await s.raw.execute("DELETE FROM tool_registrations WHERE tool_id LIKE 'bench-new-%'")
    return counts[0], counts[1]


# -- one size ------------------------------------------------------------------


@dataclass
class HotBlock:
    """The batch heartbeat on one database: an untimed first pass, then the timed rounds."""

    first_pass_rows_per_s: float = 0.0
    first_pass_hot_percent: float = 0.0
    timed_hot_percent: float = 0.0
    timed_row_updates: int = 0


@dataclass
class SizeInfo:
    size: int
    seed_seconds: float
    seed_db_seconds: float
    rare_rows: int = 0
    common_rows: int = 0
    heartbeat: dict[str, HotBlock] = field(default_factory=dict)

    @property
    def seed_rows_per_s(self) -> float:
        return self.size / self.seed_seconds

    @property
    def seed_db_rows_per_s(self) -> float:
        return self.size / self.seed_db_seconds


async def seed(dsn: str, size: int, rng: random.Random) -> tuple[list[str], float, float]:
    """Register ``size`` tools through ``create_registrations``.

    Returns the ids, the seconds taken in all, and the seconds spent inside
    ``create_registrations`` (the rest builds and validates the models).
    """
    ids = [f"bench-tool-{i:07d}" for i in range(size)]
    started = time.perf_counter()
    in_db = 0.0
    async with PostgresClient(client_settings(1), dsn=dsn) as client:
        repo = ToolRegistrationRepository(client)
        for start in range(0, size, SEED_BATCH):
            batch = make_models(rng, ids[start : start + SEED_BATCH])
            call_started = time.perf_counter()
            stored = await repo.create_registrations(batch)
            in_db += time.perf_counter() - call_started
            assert len(stored) == len(batch)
    elapsed = time.perf_counter() - started
    await sql(dsn, "VACUUM ANALYZE")
    return ids, elapsed, in_db


async def flushed_hot_counters(dsn: str) -> tuple[int, int]:
    """HOT counters once the backends have flushed their statistics (about a second)."""
    await asyncio.sleep(1.1)
    return await hot_counters(dsn)


def hot_share(before: tuple[int, int], after: tuple[int, int]) -> tuple[float, int]:
    updates = after[0] - before[0]
    return 100.0 * (after[1] - before[1]) / max(1, updates), updates


async def first_pass(dsn: str, batches: list[list[str]]) -> float:
    """Heartbeat every tool once (raw, untimed for the table); rows per second."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        started = time.perf_counter()
        for batch in batches:
            await conn.fetch(Q["update_heartbeats"], batch, None)
        return sum(map(len, batches)) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def bench_size(
    server: Server,
    size: int,
    new_models: list[ModelToolRegistrationCreate],
    seconds: float,
    rounds: int,
    results: list[Result],
    freeze: bool = True,
) -> SizeInfo:
    rng = random.Random(size)
    tag = uuid.uuid4().hex[:8]
    main_name, nohb_name = f"toolreg_bench_{tag}", f"toolreg_bench_{tag}_nohb"
    dsn = await server.create(main_name)
    await runner.upgrade(dsn)
    print(f"size {size}: seeding through create_registrations...", flush=True)
    ids, seed_seconds, seed_db_seconds = await seed(dsn, size, rng)
    info = SizeInfo(size, seed_seconds, seed_db_seconds)
    print(
        f"  seeded in {seed_seconds:.1f}s ({info.seed_rows_per_s:.0f} rows/s; "
        f"{info.seed_db_rows_per_s:.0f} rows/s inside create_registrations)",
        flush=True,
    )
    # The copy without the guide's last_heartbeat index (taken before any timed work).
    nohb_dsn = await server.create(nohb_name, template=main_name)
    await sql(nohb_dsn, f"DROP INDEX {HB_INDEX}")
    await sql(nohb_dsn, "VACUUM ANALYZE tool_registrations")

    shuffled = ids[:]
    rng.shuffle(shuffled)
    batch_size = min(HEARTBEAT_BATCH, size)  # a registry smaller than a batch: one batch
    batches = [
        shuffled[i : i + batch_size] for i in range(0, len(shuffled) - batch_size + 1, batch_size)
    ]
    inp = Inputs(shuffled, batches, new_models)
    if freeze:
        # What a server does once started (api/app.py): what exists now (the
        # prepared inputs among it) stays out of every later full collection.
        gc.freeze()
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
    # A first pass heartbeats every tool once (raw; reported apart), so that the
    # timed rounds run on a table that heartbeats have already been through
    # rather than on the freshly loaded one.
    for label, target_dsn in (("with index", dsn), ("index dropped", nohb_dsn)):
        block = info.heartbeat[label] = HotBlock()
        await sql(target_dsn, "VACUUM ANALYZE tool_registrations")
        before = await flushed_hot_counters(target_dsn)
        block.first_pass_rows_per_s = await first_pass(target_dsn, inp.batches)
        middle = await flushed_hot_counters(target_dsn)
        block.first_pass_hot_percent, _ = hot_share(before, middle)
        r = result(
            f"update_heartbeats x{batch_size} ({label})",
            1,
            "rows/s",
            0.8 if target_dsn == dsn else None,
        )
        r.units_per_call = batch_size
        async with Sides(target_dsn, 1) as s:
            # Eight calls per side and round at least: single batches are spiky
            # (a non-HOT update adds entries to every index, the three GIN
            # ones included, whose pending lists get flushed now and then).
            await compare(r, *batch_heartbeat_calls(s, inp), warmup_calls=6, min_calls=8, **kw)
        after = await flushed_hot_counters(target_dsn)
        block.timed_hot_percent, block.timed_row_updates = hot_share(middle, after)
        r.note = f"HOT {block.timed_hot_percent:.0f}%"
        print(
            f"    first pass {block.first_pass_rows_per_s:.0f} rows/s, HOT "
            f"{block.first_pass_hot_percent:.0f}%; timed rounds HOT "
            f"{block.timed_hot_percent:.0f}% of {block.timed_row_updates} row updates",
            flush=True,
        )

    await server.drop(nohb_name)
    await server.drop(main_name)
    return info


# -- report --------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def table(results: list[Result]) -> str:
    lines = [
        "| size | operation | conns | unit | ours | raw | ratio | per-round ratios: median [range] "
        "| target | result | client CPU µs/call ours / raw (CPU-based ratio) | notes |",
        "|---:|---|---:|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for r in results:
        paired = r.paired
        verdict = "-" if r.passed is None else ("pass" if r.passed else "**FAIL**")
        target = "-" if r.target is None else f">= {r.target}"
        cpu = "-"
        if r.ours_cpu and r.cpu_estimate is not None:
            ours_us = statistics.median(r.ours_cpu) * 1e6
            raw_us = statistics.median(r.raw_cpu) * 1e6
            cpu = f"{fmt(ours_us)} / {fmt(raw_us)} ({r.cpu_estimate:.2f})"
        lines.append(
            f"| {r.size} | {r.op} | {r.conns} | {r.unit} | {fmt(r.ours_median)} "
            f"| {fmt(r.raw_median)} | {r.ratio:.2f} "
            f"| {statistics.median(paired):.2f} [{min(paired):.2f}-{max(paired):.2f}] "
            f"| {target} | {verdict} | {cpu} | {r.note} |"
        )
    return "\n".join(lines)


def heartbeat_table(infos: list[SizeInfo], results: list[Result]) -> str:
    lines = [
        "| size | last_heartbeat index | first pass rows/s (raw) | first pass HOT "
        "| ours rows/s | raw rows/s | ratio | HOT in timed rounds |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for info in infos:
        for label, block in info.heartbeat.items():
            r = next(
                x
                for x in results
                if x.size == info.size and x.op.startswith("update_heartbeats") and label in x.op
            )
            lines.append(
                f"| {info.size} | {label} | {fmt(block.first_pass_rows_per_s)} "
                f"| {block.first_pass_hot_percent:.0f}% | {fmt(r.ours_median)} "
                f"| {fmt(r.raw_median)} | {r.ratio:.2f} | {block.timed_hot_percent:.0f}% |"
            )
    return "\n".join(lines)


def source_revision() -> str:
    """The commit of the code under test (``-dirty`` with uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


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
        revision = await asyncio.to_thread(source_revision)
        print(f"code: {revision}", flush=True)
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
                await bench_size(
                    server, size, new_models, args.seconds, args.rounds, results, not args.no_freeze
                )
            )
    finally:
        await server.stop()
    elapsed = time.perf_counter() - started
    print()
    print(table(results))
    print()
    print(heartbeat_table(infos, results))
    print()
    for info in infos:
        print(
            f"size {info.size}: seeded in {info.seed_seconds:.1f}s ({info.seed_rows_per_s:,.0f} "
            f"rows/s with model validation, {info.seed_db_rows_per_s:,.0f} rows/s inside "
            f"create_registrations); rare capability {info.rare_rows} rows, "
            f"common {info.common_rows} rows"
        )
    print(f"total {elapsed:.0f}s")
    if args.json:
        payload = {
            "code": revision,
            "server": version,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "elapsed_s": elapsed,
            "sizes": [asdict(i) for i in infos],
            "results": [
                asdict(r) | {"ratio": r.ratio, "passed": r.passed, "cpu_estimate": r.cpu_estimate}
                for r in results
            ],
        }
        await asyncio.to_thread(write_json, Path(args.json), payload)
    failed = [r for r in results if r.passed is False]
    return 1 if failed and args.strict else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_repository", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seconds", type=float, default=0.25, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds per side")
    parser.add_argument(
        "--create-per-second",
        type=int,
        default=25_000,
        help="unregistered tools prepared per second of a round for create_registration",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="skip gc.freeze() before the timed work (the server freezes after start-up)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a ratio misses its target"
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 1:
        parser.error("--sizes: every size must be at least 1 tool")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
