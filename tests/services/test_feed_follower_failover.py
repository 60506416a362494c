"""The change feed follows again soon after its database comes back from a long outage.

A failover takes about 8 s (benchmarks/bench_failover.py). The follower's
reconnect backoff was capped at 2 s: every replica's discovery then converged
about a second (up to two) after the promoted primary took writes. The cap is
0.5 s; this holds the follower to it across an outage through a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from omninode_bridge.services import ChangeFeed, PostgresClient
from omninode_bridge.services.discovery.sync import DiscoveryTuning
from omninode_bridge.services.feed_follower import FeedFollower, FollowTuning
from tests.support import SwitchableProxy, base_settings

OUTAGE = 5.2  # uncapped at 2 s, the attempts after the first failure come 3.15 s and 5.15 s
# in, then 7.15 s: 1.95 s after the database is back.


async def test_following_resumes_within_the_backoff_cap_after_a_long_outage(db_dsn: str) -> None:
    assert DiscoveryTuning().reconnect_max <= FollowTuning().reconnect_max <= 0.5
    proxy = SwitchableProxy(db_dsn)
    await proxy.up()
    recovered: list[float] = []
    changed = asyncio.Event()

    def on_recovered() -> None:
        recovered.append(time.monotonic())
        changed.set()

    async def times_recovered(count: int) -> None:
        async with asyncio.timeout(15):
            while len(recovered) < count:
                changed.clear()
                await changed.wait()

    settings = base_settings(pool_min_size=0, pool_max_size=2, connect_timeout=2)
    async with PostgresClient(settings, dsn=proxy.dsn) as client:
        follower = FeedFollower(ChangeFeed(client), None, on_recovered=on_recovered)

        async def follow() -> None:
            async for _ in follower.batches():
                pass

        task = asyncio.create_task(follow())
        try:
            await times_recovered(1)
            await proxy.down()
            await asyncio.sleep(OUTAGE)
            assert not follower.following
            await proxy.up()
            back = time.monotonic()
            await times_recovered(2)
            waited = recovered[1] - back
            print(f"\nfollowing again {waited:.2f} s after the database came back")
            assert waited < 1.0  # the 0.5 s cap, and a connection
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await proxy.down()
