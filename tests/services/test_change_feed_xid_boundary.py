"""The change feed across a power of ten of transaction ids: exactly once, in feed order.

Positions are ``(txid, seq)`` with txid an ``xid8``. Read as text, "1000" sorts
before "999"; these tests burn transaction ids up to just below the next power
of ten, write across it, then replay, page, follow and ask for the head.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from omninode_bridge.liveness.history import HealthHistory
from omninode_bridge.models import ChangeEvent, ModelToolRegistrationUpdate
from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.services.cursors import FeedPosition
from tests.support import registration

BURN = """
CREATE OR REPLACE PROCEDURE pg_temp.burn_xids(n bigint) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END $$
"""
BEFORE_BOUNDARY = 25  # events written below the power of ten
WRITES = 60  # events in all: about 35 of them above it
MAX_BURN = 3_000_000  # a few seconds of CALL at most; a server this old is far past 10^7


async def burn_to_just_below_a_power_of_ten(dsn: str) -> int:
    """Consume transaction ids until the next one is BEFORE_BOUNDARY below 10^k; returns 10^k."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        await conn.execute(BURN)
        current = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        # The smallest power of ten (10^4 at least) with room below it for the writes.
        boundary: int = 10 ** max(4, len(str(current + BEFORE_BOUNDARY + 10)))
        to_burn = boundary - current - BEFORE_BOUNDARY
        if to_burn > MAX_BURN:
            pytest.skip(f"the next power of ten is {to_burn} transaction ids away")
        # Other sessions of the cluster (parallel tests) consume ids too: burn in
        # steps and stop early enough that the writes still cross the boundary.
        while True:
            current = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
            left = boundary - current - BEFORE_BOUNDARY
            if left <= 0:
                break
            await conn.execute(f"CALL pg_temp.burn_xids({min(left, 200_000)})")
        assert current < boundary, "another session crossed the boundary first"
        return boundary
    finally:
        await conn.close()


def txid_of(event: ChangeEvent) -> int:
    return FeedPosition.parse(event.cursor).txid


async def test_replay_paging_following_and_head_across_a_power_of_ten(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    boundary = await burn_to_just_below_a_power_of_ten(db_dsn)
    start = await repository.feed.head_cursor()

    followed: list[ChangeEvent] = []
    all_followed = asyncio.Event()

    async def follow() -> None:
        async for event in repository.watch(start):
            followed.append(event)
            if len(followed) >= WRITES:
                all_followed.set()

    follower = asyncio.create_task(follow())
    try:
        written = []
        for index in range(WRITES):
            created = await repository.create_registration(registration(f"x{index:03d}"))
            written.append(created.tool_id)
        events = await repository.changes(start, 10_000)
        assert [e.tool_id for e in events] == written  # replay: every event once, in order
        txids = [txid_of(e) for e in events]
        assert txids == sorted(txids)
        assert min(txids) < boundary <= max(txids), "the writes did not cross the boundary"

        paged: list[ChangeEvent] = []
        cursor = start
        while True:  # pages of 7: the page that spans the boundary must not skip or repeat
            page = await repository.changes(cursor, 7)
            paged.extend(page)
            if len(page) < 7:
                break
            cursor = page[-1].cursor
        assert [e.cursor for e in paged] == [e.cursor for e in events]

        assert await repository.feed.head_cursor() == events[-1].cursor

        async with asyncio.timeout(20):
            await all_followed.wait()
        await asyncio.sleep(0.3)  # anything repeated would arrive now
        assert [e.cursor for e in followed] == [e.cursor for e in events]
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_tool_history_across_a_power_of_ten(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    boundary = await burn_to_just_below_a_power_of_ten(db_dsn)
    await repository.create_registration(registration("h"))
    for version in range(WRITES - 1):
        update = ModelToolRegistrationUpdate(metadata={"v": version})
        await repository.update_registration("h", update)
    history = await HealthHistory(repository.client, ttl_seconds=300).history("h", limit=1000)
    txids = [FeedPosition.parse(e.cursor).txid for e in history]
    assert min(txids) < boundary <= max(txids)
    assert txids == sorted(txids)
    versions = [e.registration.metadata.get("v") for e in history if e.registration]
    assert versions == [None, *range(WRITES - 1)]
