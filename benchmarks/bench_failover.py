"""Failover: the primary's node is killed under load, again and again.

Run from the repository root, as root (Patroni runs PostgreSQL as ``postgres``)::

    .venv/bin/python -m benchmarks.bench_failover [--kills 5] [--ttl 8] [--loop-wait 1]
        [--retry-timeout 3] [--writers 4] [--test-intervals]

``deploy/ha/up`` starts etcd and two Patroni-managed PostgreSQL 15 nodes
(``synchronous_mode: true``) on free loopback ports in a temporary directory;
two ``toolreg serve`` replicas run on the multi-host URL with default settings
(``--test-intervals``: the ha tests' half-second liveness passes instead).

Each kill is one phase of ``tests/ha/scenario.run_phase``: a writer load
through both replicas (creates, updates, heartbeats, deletes; 4 writers) and an
SSE client resuming with ``Last-Event-ID`` on the other replica whenever its
stream ends; after 2 s the primary's node is lost (SIGKILL of its Patroni and
of its PostgreSQL's whole process group at once); a probe creates a new tool
until one is acknowledged, then every replica's ``/v1/discover`` is polled
until it routes that tool; the load runs 2 s more. Then: every acknowledged
write must be in the database with its content, every acknowledged change on
the feed exactly once and in order, every replica's discovery equal to the
database. The killed node is started again (it rejoins as a replica through
pg_rewind) and the next kill waits until it is the synchronous standby.

Figures per kill: write unavailability (first failed write to the first
acknowledged write after it), acknowledged writes lost, events missed or
duplicated, discovery convergence (the probe acknowledged to every replica
routing it), the liveness leader's re-election (kill to a new term), and the
rejoin (node started to synchronous standby).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.ha.cluster import HaCluster, Node, missing_requirements
from tests.ha.scenario import REPLICA_ENV, Phase, run_phase
from tests.liveness.servers import spawn, stop

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService
from omninode_bridge.settings import Settings

DEFAULT_ENV = {"TOOLREG_POOL_MIN_SIZE": "2", "TOOLREG_POOL_MAX_SIZE": "10"}


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _row(index: int, old: str, new: str, phase: Phase, rejoin: float) -> str:
    return (
        f"| {index} | {old} -> {new} | {_fmt(phase.unavailable)} | {phase.acknowledged} | "
        f"{phase.lost} | {phase.uncertain} | {phase.events} | {phase.feed_errors} | "
        f"{_fmt(phase.convergence, 1000, 0)} | {_fmt(phase.reelected_after)} | {rejoin:.1f} |"
    )


async def _token(dsn: str) -> str:
    async with PostgresClient(Settings(pool_min_size=1, pool_max_size=1), dsn=dsn) as client:
        created = await TokenService(client).create(f"bench-{int(time.time())}", "write")
    return created.secret


async def main(args: argparse.Namespace) -> int:
    reason = missing_requirements()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    cluster = HaCluster(ttl=args.ttl, loop_wait=args.loop_wait, retry_timeout=args.retry_timeout)
    logs_dir = Path(tempfile.mkdtemp(prefix="toolreg-bench-failover-", dir="/tmp"))
    servers = []
    rows: list[str] = []
    phases: list[Phase] = []
    try:
        await asyncio.to_thread(cluster.up)
        await cluster.wait_healthy()
        print(f"cluster up in {cluster.up_seconds:.1f} s ({cluster.root})", file=sys.stderr)
        env = REPLICA_ENV if args.test_intervals else DEFAULT_ENV
        for i in range(2):
            log = logs_dir / f"replica-{i}.log"
            servers.append(await asyncio.to_thread(spawn, cluster.dsn, log, env))
        urls = [s.base_url for s in servers]
        token = await _token(cluster.dsn)
        for kill in range(1, args.kills + 1):
            old = await cluster.primary()
            assert old is not None

            async def lose(node: Node = old) -> None:
                cluster.kill_node(node)

            phase = await run_phase(
                f"kill{kill}",
                cluster.dsn,
                urls,
                [s.log for s in servers],
                token,
                lose,
                writers=args.writers,
            )
            new = await cluster.primary()
            started = time.monotonic()
            await cluster.start_node(old)
            await cluster.wait_healthy()
            rejoin = time.monotonic() - started
            phases.append(phase)
            rows.append(_row(kill, old.name, new.name if new else "?", phase, rejoin))
            print(rows[-1], file=sys.stderr)
            for problem in phase.all_problems()[:10]:
                print(f"  problem: {problem}", file=sys.stderr)
    finally:
        for server in servers:
            stop(server)
        await asyncio.to_thread(cluster.down)
        if phases and all(not p.all_problems() for p in phases):
            shutil.rmtree(logs_dir, ignore_errors=True)
        else:
            print(f"replica logs kept in {logs_dir}", file=sys.stderr)

    intervals = "0.5 s liveness intervals" if args.test_intervals else "default settings"
    print(
        f"\nPatroni ttl {args.ttl} s, loop_wait {args.loop_wait} s, retry_timeout "
        f"{args.retry_timeout} s; {args.writers} writers; replicas with {intervals}\n"
    )
    print(
        "| kill | primary | writes unavailable s | acked writes | acked lost | uncertain "
        "| events | missed/dup/out of order | discovery converged ms | leader re-elected s "
        "| rejoin s |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)
    unavailable = [p.unavailable for p in phases if p.unavailable is not None]
    convergence = [p.convergence for p in phases]
    elected = [p.reelected_after for p in phases if p.reelected_after is not None]
    print(
        f"\nwrite unavailability p50 {statistics.median(unavailable):.2f} s, max "
        f"{max(unavailable):.2f} s; acknowledged writes lost {sum(p.lost for p in phases)} of "
        f"{sum(p.acknowledged for p in phases)}; events missed or duplicated "
        f"{sum(p.feed_errors for p in phases)} of {sum(p.events for p in phases)}; discovery "
        f"converged p50 {statistics.median(convergence) * 1000:.0f} ms, max "
        f"{max(convergence) * 1000:.0f} ms; leader re-elected p50 "
        f"{statistics.median(elected):.2f} s"
    )
    return 0 if all(not p.all_problems() for p in phases) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--ttl", type=int, default=8)
    parser.add_argument("--loop-wait", type=int, default=1)
    parser.add_argument("--retry-timeout", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--test-intervals", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args())))
