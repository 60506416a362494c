"""After a long database outage (a failover), a candidate campaigns again within seconds.

The election backs off while the database is out of reach. Capped at the
liveness interval alone (30 s by default), a failover of about 8 s left the
registry without a leader for 6 s more after the promoted primary took writes
(benchmarks/bench_failover.py, default settings). The cap is now
``RETRY_MAX_SECONDS`` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry

from omninode_bridge.liveness import Fence, LeaderElection, LivenessMetrics
from tests.support import SwitchableProxy


async def test_a_candidate_campaigns_within_seconds_of_the_database_coming_back(
    db_dsn: str,
) -> None:
    proxy = SwitchableProxy(db_dsn)
    await proxy.up()
    elected: list[float] = []
    changed = asyncio.Event()

    async def lead(fence: Fence) -> None:
        elected.append(time.monotonic())
        changed.set()
        await asyncio.Event().wait()

    async def terms(count: int) -> None:
        async with asyncio.timeout(10):
            while len(elected) < count:
                changed.clear()
                await changed.wait()

    # The default intervals' shape: campaigns back off from 0.25 s up to the interval (30 s).
    election = LeaderElection(
        proxy.dsn,
        interval=30.0,
        lease=90.0,
        connect_timeout=2,
        metrics=LivenessMetrics(CollectorRegistry()),
        retry_delay=0.25,
    )
    task = asyncio.create_task(election.run(lead))
    try:
        await terms(1)
        await proxy.down()
        async with asyncio.timeout(5):
            while True:  # the leader's connection is cut: it steps down
                if not election.is_leader:
                    break
                await asyncio.sleep(0.01)
        # Failed campaigns wait 0.5, 1, 2, 4... s: without a cap, the one after 4.5 s of
        # outage comes about 7.5 s in, 3 s after the database is back.
        await asyncio.sleep(4.5)
        await proxy.up()
        back = time.monotonic()
        await terms(2)
        waited = elected[1] - back
        print(f"\nelected again {waited:.2f} s after the database came back")
        assert waited < 2.5  # RETRY_MAX_SECONDS (2 s), and a connection
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.down()
