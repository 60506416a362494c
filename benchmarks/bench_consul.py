"""1,000 blocked Consul health queries, all woken by one registration.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_consul [--clients 1000] [--rounds 3] [--settle 2]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after (both through
``benchmarks._support.Database``).

One real ``toolreg serve`` on 127.0.0.1 with default settings. One tool is
registered as an instance of the service ``bench-consul`` (no
``health_endpoint``: the liveness checker has nothing to probe), and its
``X-Consul-Index`` read. Then:

* one client sends ``GET /v1/health/service/bench-consul?index=<i>&wait=60s``
  on its own connection; after ``--settle`` seconds the server's database
  connections are counted (``pg_stat_activity`` rows of the server's database
  whose ``application_name`` is the pool's ``omninode-bridge``, busy ones
  apart, and every ``omninode-bridge*`` row: the pool, the change-feed
  follower, the liveness leader) and ``/metrics`` is read for the pool gauges;
* ``--clients`` - 1 more clients, one connection each (opened
  ``CONNECT_BATCH`` at a time), send the same request; after ``--settle``
  seconds, with no answer in yet, the same counts, the server's CPU over the
  settle and its RSS;
* a second tool is registered for the service (``PUT /v1/tools/{id}``); for
  every client the time from that PUT's answer ("the registration's
  acknowledgement") until its whole blocked answer has arrived is recorded,
  and the time from sending the PUT. The server may answer the PUT after
  some or all of the woken queries (they run on the same event loop), which
  makes times from its answer small or negative: the target is checked on
  both. Every answer must be 200 with a higher index and one more instance.

``--rounds`` repeats the last two steps on the same kept-alive connections
(each round registers one more tool and blocks on the index it last saw).
Clients are plain asyncio streams, so the client side adds little to the
times; the open-file soft limit is raised to the hard limit first (the
server, a child, inherits it). Server CPU is measured over the second half
of each settle (the first takes the requests in) and over each wake; client
CPU is this process's. Exit status 1 when either p99 over all rounds is not
under 500 ms, an answer is wrong or early, or the server holds more database
connections (or busy ones) with ``--clients`` blocked than with one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson

from benchmarks._support import (
    HOST,
    cpu_spent,
    cpu_times,
    machine_load,
    pct,
    raise_open_files,
    rss_mib,
    run_in_work_dir,
    served,
)

SERVICE = "bench-consul"
WAIT = "60s"
ANSWER_TIMEOUT = 90.0  # the wait, its jitter (wait/16) and a margin
CONNECT_BATCH = 100
P99_TARGET_MS = 500.0
CONNECTIONS_SQL = """
SELECT count(*) FILTER (WHERE application_name = 'omninode-bridge') AS pool,
       count(*) FILTER (WHERE application_name = 'omninode-bridge' AND state <> 'idle') AS busy,
       count(*) FILTER (WHERE application_name LIKE 'omninode-bridge%') AS server
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


def tool(i: int) -> dict[str, Any]:
    """The i-th instance of ``SERVICE`` (addresses are data only: nothing is contacted)."""
    return {
        "tool_id": f"{SERVICE}-{i:04d}",
        "node_type": "compute",
        "capabilities": {"operations": [SERVICE]},
        "endpoints": {SERVICE: f"http://{HOST}:{9000 + i}/api/{SERVICE}"},
        "metadata": {"round": i},
    }


@dataclass
class Answer:
    arrived: float  # perf_counter() when the whole answer was read
    status: int
    index: int
    body: bytes


class Blocker:
    """One client on one kept-alive HTTP/1.1 connection, asking blocking health queries."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int) -> Blocker:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def ask(self, index: int) -> None:
        path = f"/v1/health/service/{SERVICE}?index={index}&wait={WAIT}"
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await self.writer.drain()

    async def answer(self) -> Answer:
        head = await self.reader.readuntil(b"\r\n\r\n")
        arrived_head = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        arrived = time.perf_counter() if body else arrived_head
        return Answer(arrived, status, int(headers.get("x-consul-index", "0")), body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@dataclass
class Connections:
    label: str
    blocked: int
    pool: int  # pg_stat_activity rows of the pool
    busy: int  # of them, not idle
    server: int  # every connection of the server (pool, feed follower, liveness leader)
    gauge_open: float
    gauge_in_use: float
    rss_mib: float
    cpu_cores: float = float("nan")  # server CPU per wall second over the settle before


@dataclass
class Round:
    number: int
    index_before: int
    index_after: int = 0
    put_ms: float = 0.0  # the registration's round trip
    server_cpu_ms: float = 0.0  # the server's CPU from the PUT until the last answer
    client_cpu_ms: float = 0.0  # this process's CPU over the same time
    early: int = 0  # answered before the registration
    wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds from the PUT's answer
    from_sent: list[float] = field(default_factory=list)  # seconds from sending the PUT


async def count_connections(
    conn: asyncpg.Connection,
    http: httpx.AsyncClient,
    label: str,
    blocked: int,
    pid: int,
    cpu_cores: float = float("nan"),
) -> Connections:
    row = await conn.fetchrow(CONNECTIONS_SQL)
    assert row is not None
    gauges: dict[str, float] = {}
    for line in (await http.get("/metrics")).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("toolreg_db_pool_connections", "toolreg_db_pool_connections_in_use"):
            gauges[name] = float(value)
    return Connections(
        label,
        blocked,
        row["pool"],
        row["busy"],
        row["server"],
        gauges.get("toolreg_db_pool_connections", float("nan")),
        gauges.get("toolreg_db_pool_connections_in_use", float("nan")),
        rss_mib(pid),
        cpu_cores,
    )


async def connect_all(host: str, port: int, count: int) -> list[Blocker]:
    clients: list[Blocker] = []
    try:
        while len(clients) < count:
            batch = min(CONNECT_BATCH, count - len(clients))
            clients += await asyncio.gather(*(Blocker.connect(host, port) for _ in range(batch)))
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients))
        raise
    return clients


async def settle(seconds: float, pid: int, waiting: list[asyncio.Task[Answer]]) -> float:
    """Sleep ``seconds``; the server's CPU cores over their second half (the first half
    takes in the requests). Raises RuntimeError when an answer came before any change."""
    await asyncio.sleep(seconds / 2)
    before, started = cpu_times([pid]), time.perf_counter()
    await asyncio.sleep(seconds / 2)
    cores = cpu_spent(before, cpu_times([pid])) / (time.perf_counter() - started)
    early = [t for t in waiting if t.done()]
    if early:
        raise RuntimeError(f"{len(early)} blocked queries answered before any change")
    return cores


def check(answer: Answer, before: int, instances: int) -> str | None:
    """What is wrong with a woken answer, or ``None``."""
    if answer.status != 200:
        return f"status {answer.status}: {answer.body[:200]!r}"
    if answer.index <= before:
        return f"index {answer.index} not past {before}"
    found = len(orjson.loads(answer.body))
    if found != instances:
        return f"{found} instances, expected {instances}"
    return None


async def wake(
    http: httpx.AsyncClient,
    waiting: list[asyncio.Task[Answer]],
    result: Round,
    instances: int,
    pid: int,
) -> None:
    """Register one more tool while every client is blocked; record when each answer arrived."""
    new = tool(instances - 1)
    server_before, client_before = cpu_times([pid]), time.process_time()
    sent = time.perf_counter()
    response = await http.put(f"/v1/tools/{new['tool_id']}", json=new)
    acked = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"registration: {response.status_code} {response.text[:300]}")
    result.put_ms = (acked - sent) * 1000
    async with asyncio.timeout(ANSWER_TIMEOUT):
        answers = await asyncio.gather(*waiting)
    result.server_cpu_ms = cpu_spent(server_before, cpu_times([pid])) * 1000
    result.client_cpu_ms = (time.process_time() - client_before) * 1000
    for answer in answers:
        result.latencies.append(answer.arrived - acked)
        result.from_sent.append(answer.arrived - sent)
        problem = check(answer, result.index_before, instances)
        if problem is not None:
            result.wrong.append(problem)
    result.index_after = max(a.index for a in answers)


async def block_all(clients: list[Blocker], index: int) -> list[asyncio.Task[Answer]]:
    """Send every client's blocking query; the tasks that read their answers."""
    await asyncio.gather(*(c.ask(index) for c in clients))
    return [asyncio.create_task(c.answer()) for c in clients]


async def run(
    url: str, token: str, dsn: str, args: argparse.Namespace, pid: int
) -> tuple[list[Connections], list[Round]]:
    parts = urlsplit(url)
    host, port = parts.hostname or HOST, int(parts.port or 80)
    headers = {"Authorization": f"Bearer {token}"}
    conn = await asyncpg.connect(
        dsn, timeout=30, server_settings={"application_name": "bench_consul"}
    )
    clients: list[Blocker] = []
    waiting: list[asyncio.Task[Answer]] = []
    samples: list[Connections] = []
    rounds: list[Round] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
            response = await http.put(f"/v1/tools/{tool(0)['tool_id']}", json=tool(0))
            if response.status_code != 201:
                raise RuntimeError(f"registration: {response.status_code} {response.text[:300]}")
            index = int((await http.get(f"/v1/health/service/{SERVICE}")).headers["x-consul-index"])
            await asyncio.sleep(args.settle)
            samples.append(await count_connections(conn, http, "none blocked", 0, pid))

            # One client blocked; it stays blocked into round 1, with the others.
            clients = await connect_all(host, port, 1)
            waiting = await block_all(clients, index)
            cores = await settle(args.settle, pid, waiting)
            samples.append(await count_connections(conn, http, "1 blocked", 1, pid, cores))

            instances = 1
            for number in range(1, args.rounds + 1):
                started = time.perf_counter()
                if number == 1:
                    more = await connect_all(host, port, args.clients - 1)
                    waiting += await block_all(more, index)
                    clients += more
                else:
                    waiting = await block_all(clients, index)
                print(
                    f"  round {number}: {len(clients):,} blocking queries on as many "
                    f"connections in {time.perf_counter() - started:.2f} s; "
                    f"settling {args.settle:g} s",
                    flush=True,
                )
                cores = await settle(args.settle, pid, waiting)
                if number == 1:
                    label = f"{len(clients):,} blocked"
                    samples.append(
                        await count_connections(conn, http, label, len(clients), pid, cores)
                    )
                result = Round(number, index)
                instances += 1
                await wake(http, waiting, result, instances, pid)
                rounds.append(result)
                index = result.index_after
            samples.append(await count_connections(conn, http, "after the rounds", 0, pid))
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients))
        await conn.close()
    return samples, rounds


def connections_table(samples: list[Connections]) -> str:
    lines = [
        "| server state | blocked queries | pool connections (pg_stat_activity) "
        "| of them busy | all server connections | pool gauge open / in use "
        "| server CPU (cores) | server RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        cpu = "" if s.cpu_cores != s.cpu_cores else f"{s.cpu_cores:.2f}"
        lines.append(
            f"| {s.label} | {s.blocked:,} | {s.pool} | {s.busy} | {s.server} "
            f"| {s.gauge_open:.0f} / {s.gauge_in_use:.0f} | {cpu} | {s.rss_mib:.0f} |"
        )
    return "\n".join(lines)


def ms(values: list[float], p: float) -> float:
    return pct(sorted(values), p) * 1000 if values else float("nan")


def latency_table(rounds: list[Round]) -> str:
    lines = [
        "| round | answers | wrong | X-Consul-Index | PUT round trip ms "
        "| from PUT answer: min / p50 / p99 / max ms | from PUT sent: p50 / p99 / max ms "
        "| server CPU ms | client CPU ms |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def spread(values: list[float], low: bool) -> str:
        parts = [min(values) * 1000] if low else []
        parts += [ms(values, 50), ms(values, 99), max(values) * 1000]
        return " / ".join(f"{x:.0f}" for x in parts)

    for r in rounds:
        lines.append(
            f"| {r.number} | {len(r.latencies):,} | {len(r.wrong)} "
            f"| {r.index_before} -> {r.index_after} | {r.put_ms:.0f} "
            f"| {spread(r.latencies, True)} | {spread(r.from_sent, False)} "
            f"| {r.server_cpu_ms:.0f} | {r.client_cpu_ms:.0f} |"
        )
    acked = [x for r in rounds for x in r.latencies]
    sent = [x for r in rounds for x in r.from_sent]
    lines.append(
        f"| all | {len(acked):,} | {sum(len(r.wrong) for r in rounds)} | | "
        f"| {spread(acked, True)} | **{spread(sent, False)}** | | |"
    )
    return "\n".join(lines)


def verdict(samples: list[Connections], rounds: list[Round], clients: int) -> tuple[str, bool]:
    acked = ms([x for r in rounds for x in r.latencies], 99)
    sent = ms([x for r in rounds for x in r.from_sent], 99)
    one = next(s for s in samples if s.blocked == 1)
    many = next(s for s in samples if s.blocked == clients)
    wrong = [w for r in rounds for w in r.wrong]
    p99_ok = max(acked, sent) < P99_TARGET_MS
    conns_ok = many.server <= one.server and many.busy <= one.busy
    lines = [
        f"p99 until a blocked client's answer: {acked:.0f} ms from the registration's answer, "
        f"{sent:.0f} ms from sending it (target < {P99_TARGET_MS:g} ms for both): "
        f"{'pass' if p99_ok else 'FAIL'}",
        f"server database connections with 1 blocked: {one.server} ({one.busy} busy), "
        f"with {clients:,} blocked: {many.server} ({many.busy} busy): "
        f"{'pass' if conns_ok else 'FAIL'}",
    ]
    if wrong:
        lines.append(f"wrong answers: {len(wrong)}, e.g. {wrong[0]}")
    return "\n".join(lines), p99_ok and conns_ok and not wrong


def benchmark(args: argparse.Namespace, work: Path) -> tuple[list[Connections], list[Round]]:
    limit = raise_open_files(args.clients)
    print(f"open-file limit {limit} (soft raised to hard)", flush=True)
    with served(work) as (dsn, token, proc):  # no tools yet
        print(f"toolreg serve on {proc.url} (pid {proc.process.pid})", flush=True)
        print(machine_load("before"), flush=True)
        samples, rounds = asyncio.run(run(proc.url, token, dsn, args, proc.process.pid))
        print(machine_load("after"), flush=True)
    return samples, rounds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="blocked queries at once")
    parser.add_argument("--rounds", type=int, default=3, help="registrations that wake them")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds the queries stay blocked first"
    )
    args = parser.parse_args(argv)
    if not 2 <= args.clients <= 5000 or not 1 <= args.rounds <= 20:
        parser.error("bounded: 2 <= --clients <= 5000, 1 <= --rounds <= 20")
    if not 0.5 <= args.settle <= 30:
        parser.error("bounded: 0.5 <= --settle <= 30")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    samples, rounds = run_in_work_dir("toolreg-consul-bench-", benchmark, args)
    summary, ok = verdict(samples, rounds, args.clients)
    print()
    print(connections_table(samples))
    print()
    print(latency_table(rounds))
    print()
    print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
