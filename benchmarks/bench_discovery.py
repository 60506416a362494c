"""ToolDiscoveryService at scale: cached discovery, routing overhead, time to routable.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_discovery [--tools 100000] [--calls 20000]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after.

It registers ``--tools`` tools through ``create_registrations`` (batches of
1000): about 1% offer ``stamp`` (rare), about half offer ``read`` (common).
Then, on one service whose index holds them all:

* ``discover_tool`` from the index against one database query per call: the
  guide's sketch (``find_by_capability`` + filter, one statement returning
  every match) and the best single query (``find_one_routable``: one live
  tool, ``LIMIT 1``, through the GIN index). Each call is timed on its own.
* ``route_request`` to a local tool (a separate process on loopback) against
  a bare ``httpx`` POST on a shared client with the same settings (once with
  ``json=``/``response.json()``, once with orjson both ways, as the service
  does): sequential calls interleaved call by call, median latency per side.
* registration to routable: ``create_registration`` of a tool with an
  operation of its own, then waiting on the index until ``discover_tool``
  finds it; from the call's start and from its return (the commit).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from tests.services.discovery.tool_server import ToolProcess

from benchmarks._support import Database, rss_mib, tool_base
from omninode_bridge.models import ModelToolRegistrationCreate, NodeType
from omninode_bridge.services import (
    PostgresClient,
    ToolDiscoveryService,
    ToolRegistrationRepository,
)
from omninode_bridge.services.discovery.service import make_http_client
from omninode_bridge.services.discovery.sync import Q as DISCOVERY_SQL
from omninode_bridge.settings import Settings

TTL = 3600.0  # long enough that no seeded tool goes stale during the run
SEED_BATCH = 1000
OPERATIONS = ["write", "list", "delete", "stat", "search", "hash", "sign", "convert", "index"]
PAYLOAD = {"content": "Hello World", "namespace": "test"}


# -- measuring -------------------------------------------------------------------


def own_rss_mib() -> float:
    """This process's resident memory now (Linux), after a garbage collection."""
    gc.collect()
    return rss_mib(os.getpid())


def settings() -> Settings:
    return Settings(
        pool_min_size=2,
        pool_max_size=8,
        connect_timeout=30,
        command_timeout=300,
        ttl_seconds=TTL,
        retention_seconds=2 * TTL,
    )


def tool(rng: random.Random, tool_id: str) -> ModelToolRegistrationCreate:
    operations = rng.sample(OPERATIONS, rng.randint(1, 4))
    if rng.random() < 0.5:
        operations.append("read")
    if rng.random() < 0.01:
        operations.append("stamp")
    base = tool_base(tool_id)
    return ModelToolRegistrationCreate(
        tool_id=tool_id,
        node_type=rng.choice(list(NodeType)),
        capabilities={"operations": operations, "max_file_size": rng.choice([1, 5, 10]) * 10**6},
        endpoints={op: f"{base}/v1/{op}" for op in operations},
        metadata={"owner": rng.choice(["platform", "data", "ml"]), "version": "1.0.0"},
        health_endpoint=f"{base}/health",
    )


async def seed(repository: ToolRegistrationRepository, count: int) -> float:
    rng = random.Random(count)
    started = time.perf_counter()
    for start in range(0, count, SEED_BATCH):
        ids = [f"bench-tool-{i:07d}" for i in range(start, min(count, start + SEED_BATCH))]
        await repository.create_registrations([tool(rng, i) for i in ids])
    return time.perf_counter() - started


# -- timing ------------------------------------------------------------------------


@dataclass
class Dist:
    """Latencies in seconds."""

    samples: list[float]

    def q(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.q(0.50)

    @property
    def p99(self) -> float:
        return self.q(0.99)


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> Dist:
    """``n`` sequential calls, each timed; yields to the loop every 500 calls."""
    samples = []
    clock = time.perf_counter
    for i in range(n):
        started = clock()
        await call()
        samples.append(clock() - started)
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the index's background work run
    return Dist(samples)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


# -- the three measurements -----------------------------------------------------------


async def bench_discover(
    service: ToolDiscoveryService, repository: ToolRegistrationRepository, calls: int
) -> list[list[str]]:
    client = repository.client
    rows = []
    for label, op in (("rare (stamp)", "stamp"), ("common (read)", "read")):
        candidates = len(await service.routable_tools(op))

        async def cached(op: str = op) -> None:
            assert await service.discover_tool(op) is not None

        async def one_query(op: str = op) -> None:
            assert await client.fetchrow(DISCOVERY_SQL["find_one_routable"], op, TTL)

        async def guide_sketch(op: str = op) -> None:
            tools = await repository.find_by_capability("operations", [op])
            healthy = [t for t in tools if t.is_healthy(TTL)]
            assert healthy

        await timed(cached, 1000)
        ours = await timed(cached, calls)
        for name, baseline, n in (
            ("one query, LIMIT 1", one_query, max(200, calls // 20)),
            ("guide sketch (all matches)", guide_sketch, 20 if op == "read" else 200),
        ):
            await timed(baseline, min(n, 20))
            theirs = await timed(baseline, n)
            rows.append(
                [
                    f"discover_tool, {label}, {candidates:,} live",
                    name,
                    us(ours.p50),
                    us(ours.p99),
                    ms(theirs.p50),
                    f"{theirs.p50 / ours.p50:,.0f}x",
                    "p50 < 20 µs and >= 100x",
                    "pass" if ours.p50 < 20e-6 and theirs.p50 / ours.p50 >= 100 else "**FAIL**",
                ]
            )
            print(f"  {rows[-1]}", flush=True)
    return rows


async def bench_route(
    service: ToolDiscoveryService, repository: ToolRegistrationRepository, calls: int
) -> list[list[str]]:
    echo = ToolProcess("bench-echo")
    try:
        url = echo.url("/echo")
        await repository.create_registration(
            ModelToolRegistrationCreate(
                tool_id="bench-echo",
                node_type="effect",
                capabilities={"operations": ["echo"]},
                endpoints={"echo": url},
            )
        )
        async with asyncio.timeout(5):
            while await service.discover_tool("echo") is None:
                await service.wait_for_update()
        async with make_http_client(service.settings) as bare:
            headers = {"content-type": "application/json"}

            async def ours() -> None:
                await service.route_request("echo", PAYLOAD)

            async def raw_json() -> None:
                response = await bare.post(url, json=PAYLOAD)
                response.json()

            async def raw_orjson() -> None:
                response = await bare.post(url, content=orjson.dumps(PAYLOAD), headers=headers)
                orjson.loads(response.content)

            sides = {"ours": ours, "json=": raw_json, "orjson": raw_orjson}
            for call in sides.values():
                await timed(call, 200)
            # Interleaved call by call, so that every side sees the same machine.
            samples: dict[str, list[float]] = {name: [] for name in sides}
            clock = time.perf_counter
            for i in range(calls):
                for name, call in sides.items():
                    started = clock()
                    await call()
                    samples[name].append(clock() - started)
                if i % 200 == 199:
                    await asyncio.sleep(0)
            p50s = {name: [Dist(values).p50] for name, values in samples.items()}
    finally:
        echo.kill()
    ours_p50 = statistics.median(p50s["ours"])
    rows = []
    for name, label in (
        ("json=", "bare shared-client httpx POST (json=, response.json())"),
        ("orjson", "bare shared-client httpx POST (orjson both ways)"),
    ):
        theirs = statistics.median(p50s[name])
        ratio = ours_p50 / theirs
        rows.append(
            [
                "route_request to a local tool",
                label,
                ms(ours_p50),
                "-",
                ms(theirs),
                f"{ratio:.2f}x",
                "<= 1.3x",
                "pass" if ratio <= 1.3 else "**FAIL**",
            ]
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


async def bench_time_to_routable(
    service: ToolDiscoveryService, repository: ToolRegistrationRepository, samples: int
) -> list[list[str]]:
    from_call, from_commit = [], []
    for i in range(samples):
        op = f"probe-{i}"
        started = time.perf_counter()
        await repository.create_registration(
            ModelToolRegistrationCreate(
                tool_id=f"bench-probe-{i:05d}",
                node_type="compute",
                capabilities={"operations": [op]},
                endpoints={op: f"http://probe-{i}.local/{op}"},
            )
        )
        committed = time.perf_counter()
        async with asyncio.timeout(5):
            while await service.discover_tool(op) is None:
                await service.wait_for_update()
        routable = time.perf_counter()
        from_call.append(routable - started)
        from_commit.append(routable - committed)
        await asyncio.sleep(0.005)  # space the registrations out
    rows = []
    for label, dist in (("from the call", Dist(from_call)), ("from the commit", Dist(from_commit))):
        rows.append(
            [
                f"registration to routable, {label}",
                f"{samples} registrations",
                ms(dist.p50),
                ms(dist.p99),
                f"max {ms(max(dist.samples))}",
                "-",
                "p99 < 100 ms",
                "pass" if dist.p99 < 0.1 else "**FAIL**",
            ]
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


# -- main ------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    head = [
        "measure",
        "against",
        "ours p50",
        "ours p99",
        "baseline p50",
        "ratio",
        "target",
        "result",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    async with (
        Database("toolreg_bench_disc") as db,
        PostgresClient(settings(), dsn=db.dsn) as client,
    ):
        version = await client.fetchval("SELECT version()")
        print(f"server: {version}", flush=True)
        print(f"client: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
        repository = ToolRegistrationRepository(client)
        print(f"seeding {args.tools:,} tools...", flush=True)
        seeded = await seed(repository, args.tools)
        print(f"  {args.tools / seeded:,.0f} tools/s", flush=True)
        rss_before = own_rss_mib()
        service = ToolDiscoveryService(repository, settings())
        try:
            started = time.perf_counter()
            await service.start()
            load_seconds = time.perf_counter() - started
            memory = own_rss_mib() - rss_before
            print(
                f"index loaded {len(service.index):,} tools in {load_seconds:.1f}s "
                f"(resident memory +{memory:,.0f} MiB)",
                flush=True,
            )
            rows = await bench_discover(service, repository, args.calls)
            rows += await bench_route(service, repository, args.route_calls)
            rows += await bench_time_to_routable(service, repository, args.probes)
            status = service.status()
        finally:
            await service.aclose()
    print()
    print(table(rows))
    print()
    print(
        f"{args.tools:,} tools; seeded in {seeded:.1f}s; index load {load_seconds:.1f}s, "
        f"+{memory:,.0f} MiB resident; "
        f"index metrics: {status['metrics']}"
    )
    print(f"total {time.perf_counter() - began:.0f}s")
    failed = [r for r in rows if r[-1] != "pass"]
    return 1 if failed and args.strict else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_discovery", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tools", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20_000, help="discover_tool calls per op")
    parser.add_argument("--route-calls", type=int, default=2500, help="routed calls per side")
    parser.add_argument("--probes", type=int, default=300, help="registrations to time")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
