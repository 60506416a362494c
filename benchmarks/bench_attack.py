"""Plain reads while 20 pathological searches run, against the same reads with no attack.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_attack [--tools 1000] [--seconds 15] [--attackers 20]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after (both through
``benchmarks._support.Database``).

One real ``toolreg serve`` on 127.0.0.1 with the registry's default settings
(``TOOLREG_QUERY_TIMEOUT_SECONDS=5``, ``TOOLREG_SEARCH_CONCURRENCY=4``, a wait
of ``TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS=5`` for a search slot, a pool of 20).
``--tools`` tools are registered through the API (``PUT /v1/tools/{id}`` with a
write token; no ``health_endpoint``, so the liveness checker has nothing to
probe), then, after an untimed warm-up of reads:

* phase A (baseline): ``--readers`` httpx clients (4), each on its own
  connection, do ``GET /v1/tools/{random id}`` in a closed loop for
  ``--seconds``; every latency is recorded;
* phase B (attack): ``--attackers`` clients (20), each on its own connection,
  keep POSTing ``/v1/tools/search`` with a SQL/JSON path whose regular
  expression backtracks catastrophically (``PATHOLOGICAL``); each answers 422
  once the 5 s statement timeout cancels it, or 503 "overloaded" when no slot
  frees within 5 s. After ``--settle`` seconds (the searches hold their slots)
  the same reads run for ``--seconds``; then the attackers stop sending and
  their last searches are awaited.

The table gives count, req/s, p50/p90/p99/max GET latency per phase and the
B/A ratios, the CPU the server process and PostgreSQL's processes used per
wall second (B shows the attack burning the database's CPU), the server's RSS
(``/proc/<pid>/status`` VmRSS) at the end of each phase, and the machine's
load average. The attack's responses are counted by status. Exit status 1
when the p99 of plain reads during the attack is not under 100 ms, a read
fails, or a search answers anything but 422 or 503.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks._support import (
    api_tool_payload,
    cpu_spent,
    cpu_times,
    find_postmaster,
    machine_load,
    pct,
    postgres_pids,
    rss_mib,
    run_in_work_dir,
    served,
    tool_id,
)
from omninode_bridge.settings import Settings

# Backtracking that grows with the cube of the string (the one of
# tests/hardening/test_client_queries.py): minutes per row without a limit.
PATHOLOGICAL = '$ ? ("' + "a" * 2000 + 'c" like_regex "^(.*)(.*)\\\\2\\\\1$")'
P99_TARGET_MS = 100.0
REGISTER_CONCURRENCY = 8
ATTACK_DRAIN_SECONDS = 60.0  # the last searches: 5 s for a slot + 5 s of statement at most
Pids = tuple[int, int | None]  # the server's pid, PostgreSQL's postmaster (if visible)


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: Counter[str] = field(default_factory=Counter)
    server_cpu: float = 0.0  # cores: CPU seconds per wall second
    db_cpu: float = float("nan")
    rss_mib: float = float("nan")  # at the end of the phase
    load_avg: float = 0.0  # 1-minute, at the end of the phase

    def ms(self, p: float) -> float:
        return pct(sorted(self.latencies), p) * 1000 if self.latencies else float("nan")

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=float("nan")) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")


@dataclass
class Attack:
    statuses: Counter[str] = field(default_factory=Counter)
    durations: dict[str, list[float]] = field(default_factory=dict)  # seconds, by status

    def record(self, status: str, seconds: float) -> None:
        self.statuses[status] += 1
        self.durations.setdefault(status, []).append(seconds)


async def register(url: str, token: str, tools: int) -> None:
    """``PUT /v1/tools/{id}`` for every tool, ``REGISTER_CONCURRENCY`` at a time."""
    rng = random.Random(tools)
    payloads = []
    for i in range(tools):
        payload = api_tool_payload(rng, i)
        del payload["health_endpoint"]  # nothing for the liveness checker to probe
        payloads.append(payload)
    queue = iter(payloads)

    async def worker() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
            for payload in queue:
                response = await http.put(f"/v1/tools/{payload['tool_id']}", json=payload)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"PUT {payload['tool_id']}: {response.text[:500]}")

    await asyncio.gather(*(worker() for _ in range(REGISTER_CONCURRENCY)))


async def read_loop(url: str, tools: int, seed: int, seconds: float, phase: Phase) -> None:
    """One client on one connection: GET a random tool, again, until ``seconds`` are up."""
    rng = random.Random(seed)
    clock = time.perf_counter
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        deadline = clock() + seconds
        while clock() < deadline:
            path = f"/v1/tools/{tool_id(rng.randrange(tools))}"
            started = clock()
            try:
                response = await http.get(path)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            phase.latencies.append(clock() - started)
            phase.statuses[status] += 1


async def reads(
    url: str, args: argparse.Namespace, seconds: float, seed: int, phase: Phase, pids: Pids
) -> None:
    """``args.readers`` read loops for ``seconds``, with the CPU and RSS around them."""
    pid, pg = pids
    server_before, db_before = cpu_times([pid]), cpu_times(postgres_pids(pg))
    started = time.perf_counter()
    loops = (read_loop(url, args.tools, seed + i, seconds, phase) for i in range(args.readers))
    await asyncio.gather(*loops)
    phase.seconds = time.perf_counter() - started
    phase.server_cpu = cpu_spent(server_before, cpu_times([pid])) / phase.seconds
    if pg is not None:
        phase.db_cpu = cpu_spent(db_before, cpu_times(postgres_pids(pg))) / phase.seconds
    phase.rss_mib = rss_mib(pid)
    phase.load_avg = os.getloadavg()[0]


async def attack_loop(url: str, stop: asyncio.Event, attack: Attack) -> None:
    """One attacker on one connection: the pathological search, again, until told to stop."""
    async with httpx.AsyncClient(base_url=url, timeout=ATTACK_DRAIN_SECONDS) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await http.post("/v1/tools/search", json={"where": PATHOLOGICAL})
                status = str(response.status_code)
                if response.status_code == 503 and "overloaded" not in response.text:
                    status = "503 (not overloaded)"
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            attack.record(status, time.perf_counter() - started)


@dataclass
class Result:
    baseline: Phase
    attacked: Phase
    attack: Attack = field(default_factory=Attack)
    rss_start: float = float("nan")
    rss_end: float = float("nan")
    after_status: int = 0

    @property
    def p99_ok(self) -> bool:
        return self.attacked.ms(99) < P99_TARGET_MS

    @property
    def clean(self) -> bool:
        attack_ok = set(self.attack.statuses) <= {"422", "503"}
        return self.baseline.failed == 0 and self.attacked.failed == 0 and attack_ok

    @property
    def ok(self) -> bool:
        return self.p99_ok and self.clean and self.after_status == 200


async def run(url: str, token: str, args: argparse.Namespace, pids: Pids) -> Result:
    started = time.perf_counter()
    await register(url, token, args.tools)
    print(f"  registered {args.tools} tools in {time.perf_counter() - started:.1f} s", flush=True)
    await reads(url, args, args.warmup, 0, Phase("warm-up"), pids)
    result = Result(Phase("A: no attack"), Phase(f"B: {args.attackers} pathological searches"))
    result.rss_start = rss_mib(pids[0])

    print(f"phase A: {args.readers} readers, no attack, {args.seconds:g} s", flush=True)
    await reads(url, args, args.seconds, 1000, result.baseline, pids)

    print(f"phase B: {args.attackers} pathological searches in a loop, same reads", flush=True)
    stop = asyncio.Event()
    attackers = [
        asyncio.create_task(attack_loop(url, stop, result.attack)) for _ in range(args.attackers)
    ]
    try:
        await asyncio.sleep(args.settle)
        await reads(url, args, args.seconds, 2000, result.attacked, pids)
    finally:
        stop.set()
        try:
            async with asyncio.timeout(ATTACK_DRAIN_SECONDS + 10):
                await asyncio.gather(*attackers)
        except TimeoutError:
            result.attack.statuses["not finished"] += sum(not t.done() for t in attackers)
            for task in attackers:
                task.cancel()
    result.rss_end = rss_mib(pids[0])
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        result.after_status = (await http.get(f"/v1/tools/{tool_id(0)}")).status_code
    return result


def table(result: Result) -> str:
    a, b = result.baseline, result.attacked
    lines = [
        "| phase | GETs | req/s | non-200 | p50 ms | p90 ms | p99 ms | max ms "
        "| server CPU (cores) | PostgreSQL CPU (cores) | server RSS MiB | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for phase in (a, b):
        lines.append(
            f"| {phase.name} | {len(phase.latencies):,} | {phase.rps:,.0f} | {phase.failed} "
            f"| {phase.ms(50):.1f} | {phase.ms(90):.1f} | {phase.ms(99):.1f} "
            f"| {phase.max_ms:.1f} | {phase.server_cpu:.2f} | {phase.db_cpu:.2f} "
            f"| {phase.rss_mib:.0f} | {phase.load_avg:.1f} |"
        )
    lines.append(
        f"| B / A | {len(b.latencies) / max(1, len(a.latencies)):.2f} | {b.rps / a.rps:.2f} | "
        f"| {b.ms(50) / a.ms(50):.2f} | {b.ms(90) / a.ms(90):.2f} "
        f"| **{b.ms(99) / a.ms(99):.2f}** | {b.max_ms / a.max_ms:.2f} | | | | |"
    )
    return "\n".join(lines)


def attack_summary(result: Result) -> str:
    parts = []
    for status, count in sorted(result.attack.statuses.items()):
        durations = result.attack.durations.get(status, [])
        median = f" (median {statistics.median(durations):.1f} s)" if durations else ""
        parts.append(f"{status} x{count}{median}")
    verdict = "pass" if result.p99_ok else "FAIL"
    return (
        f"attack responses: {', '.join(parts) or 'none'}\n"
        f"server RSS {result.rss_start:.0f} MiB before phase A, {result.rss_end:.0f} MiB after "
        f"the attack; GET after the attack: {result.after_status}\n"
        f"p99 of plain reads during the attack: {result.attacked.ms(99):.1f} ms "
        f"(target < {P99_TARGET_MS:g} ms): {verdict}"
    )


def benchmark(args: argparse.Namespace, work: Path) -> Result:
    # A write token and no tools yet: run() registers them through the API.
    with served(work) as (dsn, token, proc):
        defaults = Settings.model_fields
        print(
            f"toolreg serve on {proc.url} (pid {proc.process.pid}), default settings: "
            f"query timeout {defaults['query_timeout_seconds'].default:g} s, "
            f"{defaults['search_concurrency'].default} search slots, "
            f"{defaults['pool_acquire_timeout'].default:g} s wait for one, "
            f"pool of {defaults['pool_max_size'].default}",
            flush=True,
        )
        pg = asyncio.run(find_postmaster(dsn))
        print(machine_load("before"), flush=True)
        result = asyncio.run(run(proc.url, token, args, (proc.process.pid, pg)))
        print(machine_load("after"), flush=True)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=int, default=1000, help="tools to register")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--readers", type=int, default=4, help="concurrent GET clients")
    parser.add_argument("--attackers", type=int, default=20, help="concurrent bad searches")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed reads first, seconds")
    parser.add_argument(
        "--settle", type=float, default=0.5, help="seconds of attack before phase B's reads"
    )
    args = parser.parse_args(argv)
    if min(args.tools, args.readers, args.attackers) < 1 or args.seconds <= 0:
        parser.error("--tools, --readers, --attackers and --seconds must be positive")
    if args.seconds > 600 or args.tools > 100_000 or args.attackers > 200:
        parser.error("bounded: --seconds <= 600, --tools <= 100000, --attackers <= 200")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_in_work_dir("toolreg-attack-bench-", benchmark, args)
    print()
    print(table(result))
    print()
    print(attack_summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
