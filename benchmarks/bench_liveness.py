"""Liveness: a health-check pass over 1,000 tools on loopback, and leader takeover after SIGKILL.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_liveness [--tools 1000] [--passes 5] [--rounds 5]
        [--stop-rounds 3] [--hanging 0,100,500] [--detect-rounds 5] [--only checks,...]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after.

Check pass: ``--tools`` tools are registered, each with its own
``health_endpoint`` path on one local HTTP server (tests/liveness/health_server,
in a process of its own, answering ``200 ok``). A complete pass of
:class:`HealthChecker` (read states, probe every endpoint with the default
concurrency of 50, anti-flap, store every result and any transition in one
statement) is timed against the raw baseline: the same GETs with a bare
``httpx`` client of the same settings (``get()``, no streaming, no body cap)
and the same concurrency, nothing read or stored. The first pass of each side
is reported as cold; then ``--passes`` passes alternate (ours, raw, ours,
raw...) and the median of each side is reported.

Takeover: two ``toolreg serve`` processes share the database with the default
intervals; the leader (``toolreg_liveness_leader`` on /metrics) is killed
with SIGKILL and the survivor's log gives the moment it was elected; a fresh
process replaces the dead one for the next of ``--rounds`` rounds.

Frozen leader: three ``toolreg serve`` processes with 1 s check and reap
intervals (so a lease of 3 s, renewed every second); the leader is stopped
with SIGSTOP and a survivor's log gives the moment it was elected (target:
within the lease plus one interval, 4 s); then the frozen one gets SIGCONT and
the time until it reports ``toolreg_liveness_leader 0`` is taken; the new
leader is frozen in the next of ``--stop-rounds`` rounds.

Detection: one ``toolreg serve`` with the issue's settings (1 s interval, 1 s
timeout, concurrency 50) and ``N`` tools whose health endpoints never answer
(for each of ``--hanging``, default 0, 100 and 500), plus one tool that
answers 200 (the health server runs in this process). Once every hanging tool
has been probed (they are then suspects), the tool's endpoint turns to 500 and
the time until its ``check_status`` reads ``critical`` in the database is
taken (polled every 10 ms); it is then made to pass again, ``--detect-rounds``
times, each failure starting at a random moment of the check cycle. Target:
the median with 500 hanging tools no more than 1.5x the median with none.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import httpx
from prometheus_client import CollectorRegistry
from tests.liveness.health_server import HealthServer
from tests.liveness.servers import ServerProcess, leader_gauge, parse_log, spawn, stop

from benchmarks._support import Database, end_process
from omninode_bridge.liveness import HealthChecker, LivenessMetrics, make_check_client
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings


class HealthProcess:
    """tests/liveness/health_server in a process of its own (not sharing the checker's loop)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.liveness.health_server"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.process.kill()
            raise RuntimeError(f"health server did not start: {line!r}")
        self.port = int(line.split()[1])

    def close(self) -> None:
        end_process(self.process, signal.SIGINT, grace=10)


async def bench_checks(dsn: str, tools: int, passes: int) -> list[str]:
    settings = Settings(pool_min_size=2, pool_max_size=8, connect_timeout=30, command_timeout=300)
    health = HealthProcess()
    try:
        urls = [f"http://127.0.0.1:{health.port}/health/{i}" for i in range(tools)]
        async with PostgresClient(settings, dsn=dsn) as client:
            repository = ToolRegistrationRepository(client)
            await repository.create_registrations(
                [
                    ModelToolRegistrationCreate(
                        tool_id=f"tool-{i:05}", node_type="effect", health_endpoint=url
                    )
                    for i, url in enumerate(urls)
                ]
            )
            metrics = LivenessMetrics(CollectorRegistry())
            async with make_check_client(settings) as http, make_check_client(settings) as bare:
                checker = HealthChecker(client, settings, http, metrics)
                gate = asyncio.Semaphore(settings.check_concurrency)

                async def get(url: str) -> None:
                    async with gate:
                        (await bare.get(url)).raise_for_status()

                async def raw_pass() -> float:
                    started = time.perf_counter()
                    async with asyncio.TaskGroup() as group:
                        for url in urls:
                            group.create_task(get(url))
                    return time.perf_counter() - started

                cold = (await checker.run_pass()).seconds
                raw_cold = await raw_pass()
                ours, raw = [], []
                for _ in range(passes):  # alternating, so both sides see the same machine
                    report = await checker.run_pass()
                    assert report.counts()["passing"] == tools, report.summary()
                    ours.append(report.seconds)
                    raw.append(await raw_pass())
    finally:
        health.close()
    ours_median, raw_median = statistics.median(ours), statistics.median(raw)
    return [
        f"health-check pass, {tools:,} tools on loopback, concurrency "
        f"{settings.check_concurrency}: median {ours_median * 1000:.0f} ms warm "
        f"(min {min(ours) * 1000:.0f}, max {max(ours) * 1000:.0f}; cold {cold * 1000:.0f} ms)",
        f"  raw httpx GETs, same concurrency, nothing stored: median {raw_median * 1000:.0f} ms "
        f"warm (cold {raw_cold * 1000:.0f} ms); ratio {ours_median / raw_median:.2f}",
        f"  = {tools / ours_median:,.0f} checks/s with the database work included",
    ]


def ms(values: list[float]) -> str:
    """``median ... ms, max ... ms`` of seconds."""
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


async def find_leader(http: httpx.AsyncClient, servers: list[ServerProcess]) -> ServerProcess:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        gauges = [await leader_gauge(http, s) for s in servers]
        if gauges.count(1.0) == 1 and gauges.count(0.0) == len(servers) - 1:
            return servers[gauges.index(1.0)]
        await asyncio.sleep(0.05)
    raise RuntimeError("no single leader within 60 s")


async def until_leader_gauge(
    http: httpx.AsyncClient,
    server: ServerProcess,
    value: float,
    since: float,
    within: float,
    failure: str,
) -> None:
    """Poll ``server``'s leader gauge until it reads ``value``; RuntimeError ``failure``
    once ``within`` seconds have passed since ``since`` (a ``time.time()``)."""
    while await leader_gauge(http, server) != value:
        if time.time() - since > within:
            raise RuntimeError(f"{failure} within {within:g} s")
        await asyncio.sleep(0.005)


async def bench_takeover(dsn: str, rounds: int, logs: Path) -> list[str]:
    env = {"TOOLREG_POOL_MIN_SIZE": "1", "TOOLREG_POOL_MAX_SIZE": "4"}
    servers = [spawn(dsn, logs / f"server-{i}.log", env) for i in range(2)]
    elected: list[float] = []
    observed: list[float] = []
    try:
        async with httpx.AsyncClient() as http:
            for round_ in range(rounds):
                leader = await find_leader(http, servers)
                (survivor,) = [s for s in servers if s is not leader]
                killed_at = time.time()
                os.kill(leader.pid, signal.SIGKILL)
                await until_leader_gauge(http, survivor, 1.0, killed_at, 120, "no takeover")
                observed.append(time.time() - killed_at)
                leader.process.wait(timeout=10)
                _, times = parse_log(survivor.log)
                elected.append(min(t for t in times if t > killed_at) - killed_at)
                servers = [survivor, spawn(dsn, logs / f"server-r{round_}.log", env)]
    finally:
        for server in servers:
            stop(server)

    return [
        f"leader takeover after SIGKILL, {rounds} rounds, default intervals "
        f"(60 s reap, 30 s check): elected {ms(elected)}; seen on /metrics {ms(observed)}",
    ]


async def leaders(http: httpx.AsyncClient, servers: list[ServerProcess]) -> list[float | None]:
    return list(await asyncio.gather(*(leader_gauge(http, s) for s in servers)))


async def bench_sigstop(dsn: str, rounds: int, logs: Path) -> list[str]:
    interval, lease = 1.0, 3.0
    env = {
        "TOOLREG_POOL_MIN_SIZE": "1",
        "TOOLREG_POOL_MAX_SIZE": "4",
        "TOOLREG_CHECK_INTERVAL_SECONDS": str(interval),
        "TOOLREG_REAP_INTERVAL_SECONDS": str(interval),
    }
    servers = [spawn(dsn, logs / f"stop-{i}.log", env) for i in range(3)]
    elected: list[float] = []
    observed: list[float] = []
    stepped_down: list[float] = []
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(rounds):
                leader = await find_leader(http, servers)
                others = [s for s in servers if s is not leader]
                await asyncio.sleep(2 * interval)
                stopped_at = time.time()
                os.kill(leader.pid, signal.SIGSTOP)
                try:
                    while (await leaders(http, others)).count(1.0) != 1:
                        if time.time() - stopped_at > 60:
                            raise RuntimeError("no takeover from a frozen leader within 60 s")
                        await asyncio.sleep(0.01)
                    observed.append(time.time() - stopped_at)
                    (successor,) = [
                        s for s, g in zip(others, await leaders(http, others), strict=True) if g
                    ]
                    _, times = parse_log(successor.log)
                    elected.append(min(t for t in times if t > stopped_at) - stopped_at)
                    await asyncio.sleep(interval)
                finally:
                    resumed_at = time.time()
                    os.kill(leader.pid, signal.SIGCONT)
                await until_leader_gauge(
                    http, leader, 0.0, resumed_at, 60, "the woken leader did not step down"
                )
                stepped_down.append(time.time() - resumed_at)
    finally:
        for server in servers:
            stop(server)

    return [
        f"leader takeover after SIGSTOP, {rounds} rounds, 3 replicas, 1 s intervals, "
        f"lease {lease:g} s (target < {(lease + interval) * 1000:.0f} ms): elected {ms(elected)}; "
        f"seen on /metrics {ms(observed)}; the woken leader stepped down after {ms(stepped_down)}",
    ]


async def bench_detection(dsn: str, hanging: list[int], rounds: int, logs: Path) -> list[str]:
    env = {
        "TOOLREG_POOL_MIN_SIZE": "1",
        "TOOLREG_POOL_MAX_SIZE": "4",
        "TOOLREG_CHECK_INTERVAL_SECONDS": "1",
        "TOOLREG_CHECK_TIMEOUT_SECONDS": "1",
        "TOOLREG_CHECK_CONCURRENCY": "50",
        "TOOLREG_REAP_INTERVAL_SECONDS": "60",
    }
    settings = Settings(pool_min_size=1, pool_max_size=4, connect_timeout=30)
    medians: dict[int, float] = {}
    lines = []
    async with HealthServer() as health, PostgresClient(settings, dsn=dsn) as client:
        repository = ToolRegistrationRepository(client)

        async def status() -> str | None:
            value = await client.fetchval(
                "SELECT check_status FROM tool_health WHERE tool_id = 'target'"
            )
            return str(value) if value is not None else None

        async def until(wanted: str, limit: float) -> float:
            started = time.monotonic()
            while await status() != wanted:
                if time.monotonic() - started > limit:
                    raise RuntimeError(f"target not {wanted} within {limit:g} s")
                await asyncio.sleep(0.01)
            return time.monotonic() - started

        for n in hanging:
            await client.execute("DELETE FROM tool_registrations")
            health.answer("/target", 200)
            for i in range(n):
                health.answer(f"/hang/{n}/{i}", delay=5)  # > the timeout; few open sockets
            await repository.create_registrations(
                [
                    ModelToolRegistrationCreate(
                        tool_id=f"hang-{i:04}",
                        node_type="effect",
                        health_endpoint=health.url(f"/hang/{n}/{i}"),
                    )
                    for i in range(n)
                ]
                + [
                    ModelToolRegistrationCreate(
                        tool_id="target", node_type="effect", health_endpoint=health.url("/target")
                    )
                ]
            )
            server = spawn(dsn, logs / f"detect-{n}.log", env)
            try:
                started = time.monotonic()
                while any(health.hits[f"/hang/{n}/{i}"] < 1 for i in range(n)):
                    if time.monotonic() - started > 600:
                        raise RuntimeError("hanging tools not all probed within 600 s")
                    await asyncio.sleep(0.1)
                await until("passing", 60)
                await asyncio.sleep(2)
                took = []
                for _ in range(rounds):
                    await asyncio.sleep(random.uniform(0, 1))  # any phase of the check cycle
                    health.answer("/target", 500)
                    took.append(await until("critical", 120))
                    health.answer("/target", 200)
                    await until("passing", 120)
                    await asyncio.sleep(1)
            finally:
                stop(server)
            medians[n] = statistics.median(took)
            ratio = medians[n] / medians[hanging[0]]
            lines.append(
                f"  {n:>4} hanging: failing tool critical after median {medians[n]:.2f} s "
                f"(min {min(took):.2f}, max {max(took):.2f}; {rounds} rounds); "
                f"{ratio:.2f}x the first row"
            )
    return [
        "detection of a failing tool (1 s interval, 1 s timeout, concurrency 50, "
        "fail threshold 3; target: <= 1.5x the time with none hanging)",
        *lines,
    ]


async def main_async(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="toolreg-bench-live-logs-", dir="/tmp"))
    try:
        async with Database("toolreg_bench_live") as db:
            conn = await asyncpg.connect(db.dsn, timeout=30)
            try:
                print(f"server: {await conn.fetchval('SELECT version()')}", flush=True)
            finally:
                await conn.close()
            print(f"client: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
            lines: list[str] = []
            if "checks" in args.only:
                lines += await bench_checks(db.dsn, args.tools, args.passes)
            if "takeover" in args.only:
                lines += await bench_takeover(db.dsn, args.rounds, logs)
            if "sigstop" in args.only:
                lines += await bench_sigstop(db.dsn, args.stop_rounds, logs)
            if "detection" in args.only:
                hanging = [int(n) for n in args.hanging.split(",")]
                lines += await bench_detection(db.dsn, hanging, args.detect_rounds, logs)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    print()
    print("\n".join(lines))
    print(f"total {time.perf_counter() - began:.0f}s")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_liveness", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tools", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=5, help="warm check passes per side")
    parser.add_argument("--rounds", type=int, default=5, help="SIGKILL takeovers to time")
    parser.add_argument("--stop-rounds", type=int, default=3, help="SIGSTOP takeovers to time")
    parser.add_argument(
        "--hanging", default="0,100,500", help="hanging tools per detection run (first: baseline)"
    )
    parser.add_argument("--detect-rounds", type=int, default=5, help="detections per run")
    parser.add_argument(
        "--only",
        default="checks,takeover,sigstop,detection",
        help="comma-separated parts to run: checks, takeover, sigstop, detection",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
