"""One fault under load, measured and checked: used by the ha tests and bench_failover.

``run_phase`` starts an SSE follower, a writer load through every replica and a
monitor of ``/ready``, ``/metrics`` and discovery; lets them run, injects the
fault, waits for a write to succeed again, lets the load run on, stops it, and
checks the database, the feed, every replica's discovery and the leadership.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from omninode_bridge.services import ChangeFeed, PostgresClient
from omninode_bridge.settings import Settings
from tests.ha.checks import (
    LeaderLog,
    OutageMonitor,
    check_database,
    check_discovery,
    check_feed,
    check_leadership,
    check_one_leader,
    read_tools,
    wait_discovery,
)
from tests.ha.load import SseFollower, WriterLoad, registration

__all__ = ["REPLICA_ENV", "Phase", "run_phase"]

# The test replicas' liveness passes run every half second (a lease of 1.5 s), so that a
# failover lands among many passes; connects and pool waits give up within 3 s.
REPLICA_ENV = {
    "TOOLREG_REAP_INTERVAL_SECONDS": "0.5",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "0.5",
    "TOOLREG_POOL_MIN_SIZE": "2",
    "TOOLREG_POOL_MAX_SIZE": "10",
    "TOOLREG_CONNECT_TIMEOUT": "3",
    "TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS": "3",
}
# Log lines that would mean a follower lost its place in the feed.
RESYNC_MARKERS = ("discovery index reloads", "fell behind the retention", "ResyncRequiredError")
FEED_CATCH_UP = 20.0  # seconds for the SSE follower to reach the feed's head after the load
DISCOVERY_CATCH_UP = 10.0


@dataclass
class Phase:
    """What one phase measured and found."""

    name: str
    fault_at: float = 0.0
    unavailable: float | None = None  # first failed write -> first acknowledged write after it
    first_failure_after: float | None = None  # fault -> first failed write
    probe_acked_after: float = 0.0  # fault -> the first probe write acknowledged
    convergence: float = 0.0  # that probe acknowledged -> every replica's discovery routes it
    reelected_after: float | None = None  # fault -> a liveness leader elected after it
    acknowledged: int = 0
    uncertain: int = 0
    events: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)
    monitor: OutageMonitor | None = None

    @property
    def lost(self) -> int:
        """Acknowledged writes missing or wrong in the database."""
        return len(self.problems.get("database", []))

    @property
    def feed_errors(self) -> int:
        """Events missed, repeated, out of order or never written."""
        return len(self.problems.get("feed", []))

    def all_problems(self) -> list[str]:
        return [f"{what}: {p}" for what, found in self.problems.items() for p in found]


async def head_cursor(dsn: str) -> str:
    async with PostgresClient(Settings(pool_min_size=1, pool_max_size=1), dsn=dsn) as client:
        return await ChangeFeed(client).head_cursor()


async def lease_generation(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        value = await conn.fetchval(
            "SELECT generation FROM liveness_leases WHERE name = 'liveness'"
        )
    finally:
        await conn.close()
    return int(value or 0)


async def _create(http: httpx.AsyncClient, url: str, tool_id: str) -> bool:
    try:
        response = await http.post(url + "/v1/tools", json=registration(tool_id, 0))
    except httpx.TransportError:
        return False
    return response.status_code == 201


async def run_phase(
    name: str,
    dsn: str,
    urls: list[str],
    logs: list[Path],
    token: str,
    fault: Callable[[], Awaitable[object]],
    *,
    before: float = 2.0,
    after: float = 2.0,
    recover: Callable[[], Awaitable[object]] | None = None,
    writers: int = 4,
) -> Phase:
    """Run the load, inject ``fault`` (then ``recover``, load still running), and check."""
    phase = Phase(name)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        anchor = f"anchor-{name}"
        assert await _create(http, urls[0], anchor)
        # Every replica's discovery index loads now, and follows the feed from here on.
        await wait_discovery(urls, anchor, timeout=10)
        follower = SseFollower(urls, await head_cursor(dsn), token)
        load = WriterLoad(urls, token, name, writers=writers)
        monitor = phase.monitor = OutageMonitor(urls, anchor)
        follower.start()
        load.start()
        monitor.start()
        try:
            await asyncio.sleep(before)
            phase.fault_at = time.time()
            await fault()
            # The probe: one new tool at a time until a create is acknowledged, then the
            # time until every replica's discovery routes it.
            attempt = 0
            while True:
                attempt += 1
                probe = f"probe-{name}-{attempt}"
                if await _create(http, urls[attempt % len(urls)], probe):
                    break
                await asyncio.sleep(0.02)
            phase.probe_acked_after = time.time() - phase.fault_at
            phase.convergence = await wait_discovery(urls, probe, timeout=30)
            await asyncio.sleep(after)
            if recover is not None:
                await recover()
                await asyncio.sleep(after)
        finally:
            await load.stop()
            await monitor.stop()
        try:
            await follower.until_cursor(await head_cursor(dsn), FEED_CATCH_UP)
        except TimeoutError:
            pass  # reported by check_feed as missing events
        finally:
            await follower.stop()

    window = load.unavailability(phase.fault_at)
    if window is not None:
        phase.unavailable = window[1] - window[0]
        phase.first_failure_after = window[0] - phase.fault_at
    phase.acknowledged = len(load.acknowledged())
    phase.uncertain = sum(1 for t in load.tools.values() if t.uncertain is not None)
    phase.events = len(follower.events)
    phase.statuses = collections.Counter(str(op.status) for op in load.ops if not op.acknowledged)

    tools = await read_tools(dsn, name)
    phase.problems["database"] = check_database(load, tools)
    phase.problems["feed"] = check_feed(load, follower)
    for log in logs:  # a cursor the promoted primary refused would restart a follower
        text = log.read_text(errors="replace")
        phase.problems["feed"] += [f"{log.name}: {m}" for m in RESYNC_MARKERS if m in text]
    if any(status.startswith("5") and status not in ("502", "503") for status in phase.statuses):
        phase.problems["statuses"] = [f"server errors besides 503: {dict(phase.statuses)}"]
    expected = {tool_id: tool_id in tools for tool_id in load.tools}
    deadline = time.monotonic() + DISCOVERY_CATCH_UP
    while problems := await check_discovery(urls, expected):
        if time.monotonic() > deadline:
            phase.problems["discovery"] = problems[:20]
            break
        await asyncio.sleep(0.2)
    phase.problems["leadership"] = await check_one_leader(urls, timeout=10)
    now = time.time()
    leader_logs = [LeaderLog.read(log.name, log, now) for log in logs]
    phase.problems["leadership"] += check_leadership(leader_logs, await lease_generation(dsn))
    elected = [start for log in leader_logs for _, start, _ in log.terms if start > phase.fault_at]
    if elected:
        phase.reelected_after = min(elected) - phase.fault_at
    return phase
