"""Liveness: a health-check pass over 1,000 tools on loopback, and leader takeover after SIGKILL.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_liveness [--tools 1000] [--passes 5] [--rounds 5]

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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from prometheus_client import CollectorRegistry
from tests.liveness.servers import ServerProcess, leader_gauge, parse_log, spawn, stop

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.liveness import HealthChecker, LivenessMetrics, make_check_client
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


class Database:
    """A throwaway database: on DATABASE_URL's server, or on a fresh embedded one."""

    def __init__(self) -> None:
        self.url = os.environ.get("DATABASE_URL") or None
        self.data_dir: Path | None = None
        self.name = f"toolreg_bench_live_{uuid.uuid4().hex[:8]}"
        self.dsn = ""

    async def __aenter__(self) -> Database:
        if self.url:
            conn = await asyncpg.connect(with_database(self.url, "postgres"), timeout=30)
            try:
                await conn.execute(f'CREATE DATABASE "{self.name}"')
            finally:
                await conn.close()
            self.dsn = with_database(self.url, self.name)
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix="toolreg-bench-", dir="/tmp"))
            self.data_dir.chmod(0o755)
            server = await start_embedded(self.data_dir, self.name)
            self.dsn = server.dsn(self.name)
        await runner.upgrade(self.dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.url:
            conn = await asyncpg.connect(with_database(self.url, "postgres"), timeout=30)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await conn.close()
        elif self.data_dir is not None:
            await stop_embedded(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)


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
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


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


async def find_leader(http: httpx.AsyncClient, servers: list[ServerProcess]) -> ServerProcess:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        gauges = [await leader_gauge(http, s) for s in servers]
        if gauges.count(1.0) == 1 and gauges.count(0.0) == len(servers) - 1:
            return servers[gauges.index(1.0)]
        await asyncio.sleep(0.05)
    raise RuntimeError("no single leader within 60 s")


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
                while await leader_gauge(http, survivor) != 1.0:
                    if time.time() - killed_at > 120:
                        raise RuntimeError("no takeover within 120 s")
                    await asyncio.sleep(0.005)
                observed.append(time.time() - killed_at)
                leader.process.wait(timeout=10)
                _, times = parse_log(survivor.log)
                elected.append(min(t for t in times if t > killed_at) - killed_at)
                servers = [survivor, spawn(dsn, logs / f"server-r{round_}.log", env)]
    finally:
        for server in servers:
            stop(server)

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"

    return [
        f"leader takeover after SIGKILL, {rounds} rounds, default intervals "
        f"(60 s reap, 30 s check): elected {ms(elected)}; seen on /metrics {ms(observed)}",
    ]


async def main_async(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="toolreg-bench-live-logs-", dir="/tmp"))
    try:
        async with Database() as db:
            conn = await asyncpg.connect(db.dsn, timeout=30)
            try:
                print(f"server: {await conn.fetchval('SELECT version()')}", flush=True)
            finally:
                await conn.close()
            print(f"client: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
            lines = await bench_checks(db.dsn, args.tools, args.passes)
            lines += await bench_takeover(db.dsn, args.rounds, logs)
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
