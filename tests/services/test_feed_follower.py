"""FeedFollower's batches, on a real database: a transaction is never split between two.

Consumers show readers their state between batches (the live view answers
Consul queries then), and the Consul index is a transaction id: a reader that
saw half of a transaction under its id blocked on that id while the other half
applied, missing the change until its wait ran out.
"""

from __future__ import annotations

import asyncio

from omninode_bridge.models import ChangeEvent
from omninode_bridge.services import ChangeFeed, ToolRegistrationRepository
from omninode_bridge.services.cursors import FeedPosition
from omninode_bridge.services.feed_follower import FeedFollower, FollowTuning
from tests.support import registration


async def test_a_transaction_comes_whole_in_one_batch_however_small_the_batches(
    repository: ToolRegistrationRepository,
) -> None:
    start = await repository.feed.head_cursor()
    await repository.create_registration(registration("a"))
    await repository.create_registrations([registration(t) for t in ("b", "c", "d", "e", "f")])
    await repository.create_registration(registration("g"))
    follower = FeedFollower(ChangeFeed(repository.client), start, tuning=FollowTuning(batch_size=2))
    batches: list[list[ChangeEvent]] = []
    async with asyncio.timeout(10):
        async for batch in follower.batches():
            batches.append(batch)
            if sum(map(len, batches)) >= 7:
                break
    assert [e.tool_id for b in batches for e in b] == list("abcdefg")
    txids = [{FeedPosition.parse(e.cursor).txid for e in b} for b in batches]
    for i, ids in enumerate(txids):
        for later in txids[i + 1 :]:
            assert not ids & later, [[e.tool_id for e in b] for b in batches]
