"""Memory of the whole server: N tools, discovery loaded, SSE clients and blocked queries.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_server_memory [--tools 1000000] [--sse 200]
        [--blocked 1000] [--database DSN]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp (``benchmarks._support.Database``).
``--database`` names an existing database instead (migrated to head, kept):
it is seeded only when it holds fewer than ``--tools`` registrations, so
that runs before and after a change share one seeding.

Phases, each with the server's ``VmRSS`` and ``VmHWM`` (``/proc/<pid>/status``):

1. **empty**: ``toolreg serve`` on the migrated database with no tools, once
   its live view and discovery index answer (a Consul read and a discover);
2. **loaded**: the database seeded with ``--tools`` realistic registrations
   (``_support.tool_payload``; ``bench_scale.seed`` when that module
   exists), a new ``toolreg serve``, timed from its start until
   ``GET /v1/catalog/services`` answers 200 (the live view is loaded) and
   ``GET /v1/discover/read`` answers 200 (the discovery index is);
3. **clients**: ``--sse`` clients stream ``GET /v1/changes`` and ``--blocked``
   Consul blocking queries (``/v1/health/service/transcode?index=<now>&wait=5m``,
   about 1% of the tools) wait, every one on its own loopback connection; RSS
   is read after they have all been accepted and ``SETTLE`` seconds passed.

The target (issue 15, target 6): ``VmRSS`` with clients under 1.5 GB (1,500,000,000
bytes). Exit status 1 when it is missed or a phase fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from benchmarks._support import (
    Database,
    Proc,
    check_alive,
    machine_load,
    print_logs,
    raise_open_files,
    run_in_work_dir,
    serve,
    stop_process,
    tool_payload,
)

TARGET_BYTES = 1_500_000_000
SERVICE = "transcode"  # about 1% of bench_repository's tools declare it
OPERATION = "read"  # about half of them
SEED_BATCH = 2000
SEED_WORKERS = 2
READY_TIMEOUT = 1800.0
CLIENT_TIMEOUT = 120.0  # to open every client and see it accepted
SETTLE = 3.0
BLOCK_WAIT = "5m"
OPEN_BATCH = 100
TTL = "86400"  # a day: the seeded tools count as heartbeating for the whole run
RETENTION = "172800"  # must be longer than the TTL

Seed = Callable[[str, int], Awaitable[float]]


# -- seeding -----------------------------------------------------------------------------


async def count_tools(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM tool_registrations"))
    finally:
        await conn.close()


async def local_seed(dsn: str, n: int) -> float:
    """Seed tools ``bench-mem-<i>`` up to ``n`` through ``create_registrations``; seconds."""
    from omninode_bridge.models import ModelToolRegistrationCreate
    from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
    from omninode_bridge.settings import Settings

    started = time.perf_counter()
    settings = Settings(pool_min_size=SEED_WORKERS, pool_max_size=SEED_WORKERS, command_timeout=600)
    async with PostgresClient(settings, dsn=dsn) as client:
        repo = ToolRegistrationRepository(client)
        starts = iter(range(0, n, SEED_BATCH))

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for start in starts:
                batch = [
                    ModelToolRegistrationCreate(**tool_payload(rng, f"bench-mem-{i:07d}"))
                    for i in range(start, min(n, start + SEED_BATCH))
                ]
                await repo.create_registrations(batch)

        await asyncio.gather(*(worker(w) for w in range(SEED_WORKERS)))
        await client.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def seeder() -> tuple[str, Seed]:
    """``bench_scale.seed`` when that module offers one, else this module's."""
    with contextlib.suppress(ImportError):
        module = importlib.import_module("benchmarks.bench_scale")
        seed = getattr(module, "seed", None)
        if seed is not None:
            return "benchmarks.bench_scale.seed", seed
    return "benchmarks.bench_server_memory.local_seed", local_seed


async def migrate(dsn: str) -> None:
    from omninode_bridge.migrations import runner

    await runner.upgrade(dsn)


# -- the server --------------------------------------------------------------------------


@dataclass
class Memory:
    rss: int  # bytes
    hwm: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        fields = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
        return cls(fields["VmRSS"], fields["VmHWM"])


@dataclass
class Phase:
    name: str
    memory: Memory
    note: str = ""


def start_server(dsn: str, work: Path, name: str) -> Proc:
    # Tools that heartbeat stay fresh: seeded ones would go stale after the default TTL and
    # the liveness leader would mark a million of them (not what this measures).
    return serve(dsn, work, name, TOOLREG_TTL_SECONDS=TTL, TOOLREG_RETENTION_SECONDS=RETENTION)


async def until_loaded(proc: Proc, timeout: float) -> float:
    """Seconds until the live view and the discovery index both answer (from now)."""
    started = time.perf_counter()
    deadline = started + timeout
    pending = {"/v1/catalog/services", f"/v1/discover/{OPERATION}"}
    async with httpx.AsyncClient(base_url=proc.url, timeout=60) as http:
        while pending:
            check_alive(proc)
            if time.perf_counter() > deadline:
                raise RuntimeError(f"not loaded within {timeout} s: {sorted(pending)}")
            for path in sorted(pending):
                with contextlib.suppress(httpx.TransportError):
                    status = (await http.get(path)).status_code
                    # 404 from discover: loaded, and nothing declares the operation (empty).
                    if status == 200 or (status == 404 and "discover" in path):
                        pending.discard(path)
            if pending:
                await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def clients(proc: Proc, sse: int, blocked: int) -> tuple[Memory, str]:
    """Open ``sse`` change streams and ``blocked`` blocking queries; memory with them."""
    limits = httpx.Limits(max_connections=sse + blocked + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(CLIENT_TIMEOUT, read=None)
    async with httpx.AsyncClient(base_url=proc.url, limits=limits, timeout=timeout) as http:
        # A view that lost its feed under the load's CPU pressure answers 503 while it
        # resumes: wait for it, as a Consul client's retry would.
        deadline = time.perf_counter() + CLIENT_TIMEOUT
        first = await http.get(f"/v1/health/service/{SERVICE}")
        while first.status_code == 503 and time.perf_counter() < deadline:
            await asyncio.sleep(1)
            first = await http.get(f"/v1/health/service/{SERVICE}")
        first.raise_for_status()
        index = first.headers["X-Consul-Index"]
        instances = len(first.json())
        streams: list[httpx.Response] = []
        async with contextlib.AsyncExitStack() as stack:

            async def open_stream() -> None:
                request = http.build_request("GET", "/v1/changes")
                response = await http.send(request, stream=True)
                stack.push_async_callback(response.aclose)
                response.raise_for_status()
                streams.append(response)

            for start in range(0, sse, OPEN_BATCH):
                await asyncio.gather(
                    *(open_stream() for _ in range(start, min(sse, start + OPEN_BATCH)))
                )
            path = f"/v1/health/service/{SERVICE}?index={index}&wait={BLOCK_WAIT}"
            waiting = [asyncio.create_task(http.get(path)) for _ in range(blocked)]
            try:
                # Every query is in once the server holds one connection per client.
                deadline = time.perf_counter() + CLIENT_TIMEOUT
                while established(proc) < sse + blocked:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(
                            f"only {established(proc)} of {sse + blocked} clients connected"
                        )
                    if any(t.done() for t in waiting):
                        done = next(t for t in waiting if t.done())
                        raise RuntimeError(f"a blocked query answered early: {done.result()}")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(SETTLE)
                if any(t.done() for t in waiting):
                    raise RuntimeError("a blocked query answered during the settle")
                memory = Memory.of(proc.process.pid)
            finally:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
        note = f"{len(streams)} SSE + {blocked} blocked on `{SERVICE}` ({instances} instances)"
        return memory, note


def established(proc: Proc) -> int:
    """TCP connections the server process has accepted on its port (from /proc)."""
    port = int(proc.url.rsplit(":", 1)[1])
    inodes = set()
    fd_dir = Path(f"/proc/{proc.process.pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc.process.pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                local_port = int(parts[1].rsplit(":", 1)[1], 16)
                if local_port == port and parts[3] == "01" and parts[9] in inodes:
                    count += 1
    return count


# -- the run -----------------------------------------------------------------------------


def mb(value: int) -> str:
    return f"{value / 1e6:,.0f} MB"


def report(phases: list[Phase], tools: int, ready: float, seeded: str) -> tuple[str, bool]:
    lines = [
        f"tools: {tools:,}; {seeded}; ready after {ready:.1f} s (live view and discovery)",
        "",
        "| phase | VmRSS | VmHWM | note |",
        "|---|---|---|---|",
    ]
    for phase in phases:
        lines.append(
            f"| {phase.name} | {mb(phase.memory.rss)} | {mb(phase.memory.hwm)} | {phase.note} |"
        )
    final = phases[-1].memory.rss
    ok = final < TARGET_BYTES
    lines += [
        "",
        "| target | figure | pass/miss |",
        "|---|---|---|",
        f"| whole server RSS < 1.5 GB ({tools:,} tools, discovery loaded, clients) "
        f"| {mb(final)} | {'pass' if ok else 'miss'} |",
    ]
    return "\n".join(lines), ok


async def prepare(dsn: str, tools: int) -> str:
    await migrate(dsn)
    have = await count_tools(dsn)
    if have >= tools:
        return f"{have:,} tools already seeded"
    name, seed = seeder()
    seconds = await seed(dsn, tools)
    return f"seeded by {name} in {seconds:.1f} s"


def benchmark(args: argparse.Namespace, work: Path) -> tuple[list[Phase], float, str]:
    raise_open_files(args.sse + args.blocked)
    db = Database()
    phases: list[Phase] = []
    proc: Proc | None = None
    try:
        if args.database:
            dsn = args.database
            asyncio.run(migrate(dsn))
        else:
            dsn = asyncio.run(db.start())
            asyncio.run(migrate(dsn))
            proc = start_server(dsn, work, "empty")
            asyncio.run(until_loaded(proc, READY_TIMEOUT))
            phases.append(Phase("empty server", Memory.of(proc.process.pid), "no tools"))
            stop_process(proc)
            proc = None
        seeded = asyncio.run(prepare(dsn, args.tools))
        print(seeded, flush=True)
        print(machine_load("before"), flush=True)
        started = time.perf_counter()
        proc = start_server(dsn, work, "loaded")
        asyncio.run(until_loaded(proc, READY_TIMEOUT))
        ready = time.perf_counter() - started  # from the start of the process
        phases.append(Phase("loaded", Memory.of(proc.process.pid), f"{args.tools:,} tools"))
        memory, note = asyncio.run(clients(proc, args.sse, args.blocked))
        phases.append(Phase("with clients", memory, note))
        print(machine_load("after"), flush=True)
        check_alive(proc)
        return phases, ready, seeded
    except BaseException:
        print_logs(proc)
        raise
    finally:
        if proc is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                stop_process(proc)
        if not args.database:
            asyncio.run(db.stop())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=int, default=1_000_000, help="registrations seeded")
    parser.add_argument("--sse", type=int, default=200, help="clients on /v1/changes")
    parser.add_argument("--blocked", type=int, default=1000, help="blocked Consul queries")
    parser.add_argument("--database", help="an existing database to use (kept, seeded once)")
    args = parser.parse_args(argv)
    if not 1 <= args.tools <= 2_000_000:
        parser.error("bounded: 1 <= --tools <= 2,000,000")
    if not 0 <= args.sse <= 1000 or not 0 <= args.blocked <= 5000:
        parser.error("bounded: --sse <= 1000, --blocked <= 5000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases, ready, seeded = run_in_work_dir("toolreg-memory-bench-", benchmark, args)
    summary, ok = report(phases, args.tools, ready, seeded)
    print()
    print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
