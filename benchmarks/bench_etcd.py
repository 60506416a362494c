"""Put-to-registered latency of ``toolreg autodiscover etcd``, end to end.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_etcd [--puts 200]

It starts a real etcd (Debian's ``/usr/bin/etcd``, on free loopback ports,
in a temporary data dir) and a PostgreSQL database (``DATABASE_URL``'s server,
or a fresh embedded one under /tmp), migrates it, and runs the bridge as the
real command ``toolreg autodiscover etcd`` in its own process. Then, one at a
time, it

* puts ``<prefix>bench-<n>`` with a lease and waits until the tool is in the
  registry (put-to-registered), and
* revokes that lease and waits until the tool is gone (revoke-to-removed).

"Is in the registry" is observed through the change feed's
``NOTIFY toolreg_changes`` (then one ``SELECT`` confirms the row), so the
figures include the bridge's watch, validation, ownership check and write,
the commit and the notification, but no polling interval. The clock starts
right before the etcd call is sent. Everything is stopped and removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import aetcd
import asyncpg
import orjson
from tests.autodiscovery.etcd_server import EtcdServer
from tests.support import TOOLREG, clean_env

from benchmarks._support import Database
from omninode_bridge.services.change_feed import CHANNEL

WAIT = 10.0


def value(tool_id: str) -> bytes:
    return orjson.dumps(
        {
            "tool_id": tool_id,
            "node_type": "effect",
            "capabilities": {"operations": ["search"], "max_file_size": 5_000_000},
            "endpoints": {"search": f"http://127.0.0.1:9/{tool_id}/search"},
            "metadata": {"version": "1.0.0"},
            "health_endpoint": f"http://127.0.0.1:9/{tool_id}/health",
        }
    )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"{name:<22} n={len(ms):<4} p50={percentile(ms, 0.50):6.2f} ms  "
        f"p90={percentile(ms, 0.90):6.2f} ms  p99={percentile(ms, 0.99):6.2f} ms  "
        f"max={max(ms):6.2f} ms  mean={statistics.fmean(ms):6.2f} ms"
    )


class Registry:
    """Waits for the registry to reach a state, woken by the change feed's NOTIFY."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.changed = asyncio.Event()

    async def listen(self) -> None:
        await self.conn.add_listener(CHANNEL, lambda *_: self.changed.set())

    async def wait(self, done: Callable[[], Awaitable[bool]]) -> float:
        """Monotonic time at which ``done`` became true (checked at every NOTIFY)."""
        async with asyncio.timeout(WAIT):
            while True:
                if await done():
                    return time.perf_counter()
                await self.changed.wait()
                self.changed.clear()

    async def exists(self, tool_id: str) -> bool:
        found = await self.conn.fetchval(
            "SELECT 1 FROM tool_registrations WHERE tool_id = $1", tool_id
        )
        return found is not None


async def wait_for_line(stream: asyncio.StreamReader, text: str) -> None:
    async with asyncio.timeout(WAIT * 3):
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError(f"the bridge exited before saying {text!r}")
            if text in line.decode(errors="replace"):
                return


async def measure(dsn: str, etcd: EtcdServer, puts: int) -> tuple[list[float], list[float]]:
    prefix = f"/omninode/bench-{uuid.uuid4().hex[:8]}/"
    bridge = await asyncio.create_subprocess_exec(
        TOOLREG, "autodiscover", "etcd", "--endpoints", etcd.url, "--prefix", prefix,
        "--log-level", "warning",
        env=clean_env(DATABASE_URL=dsn), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    client = aetcd.Client(host="127.0.0.1", port=etcd.client_port, timeout=5)
    conn = await asyncpg.connect(dsn, timeout=30)
    registered: list[float] = []
    removed: list[float] = []
    try:
        assert bridge.stdout is not None
        await wait_for_line(bridge.stdout, "following etcd")
        registry = Registry(conn)
        await registry.listen()
        for n in range(puts + 10):  # the first ten warm up
            tool_id = f"bench-{n:05d}"
            lease = await client.lease(60)
            registry.changed.clear()
            started = time.perf_counter()
            await client.put(f"{prefix}{tool_id}".encode(), value(tool_id), lease)

            async def present(tool_id: str = tool_id) -> bool:
                return await registry.exists(tool_id)

            seen = await registry.wait(present)
            registry.changed.clear()
            revoked = time.perf_counter()
            await lease.revoke()

            async def absent(tool_id: str = tool_id) -> bool:
                return not await registry.exists(tool_id)

            gone = await registry.wait(absent)
            if n >= 10:
                registered.append(seen - started)
                removed.append(gone - revoked)
    finally:
        await conn.close()
        await client.close()
        if bridge.returncode is None:
            bridge.terminate()
        async with asyncio.timeout(WAIT):
            await bridge.communicate()
    return registered, removed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=200, help="measured puts (default 200)")
    args = parser.parse_args()

    async with Database("toolreg_bench_etcd") as db:
        conn = await asyncpg.connect(db.dsn, timeout=30)
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        etcd = EtcdServer()
        try:
            await etcd.start()
            etcd_version = (await asyncio.to_thread(_etcd_version)).strip()
            print(f"etcd {etcd_version}; PostgreSQL {version}; {os.cpu_count()} cores")
            registered, removed = await measure(db.dsn, etcd, args.puts)
            print(summary("put -> registered", registered))
            print(summary("revoke -> removed", removed))
        finally:
            await etcd.close()


def _etcd_version() -> str:
    out = subprocess.run(
        ["/usr/bin/etcd", "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return out.splitlines()[0].removeprefix("etcd Version: ")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
