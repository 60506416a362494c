"""The change feed: complete, in order, exactly once, even when commits interleave."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import asyncpg
import pytest

from omninode_bridge.errors import ResyncRequiredError, ValidationFailedError
from omninode_bridge.models import ChangeKind, ModelToolRegistrationUpdate
from omninode_bridge.services import ChangeFeed, ToolRegistrationRepository
from omninode_bridge.services.sql import load_queries
from tests.support import registration

Q = load_queries("tool_registrations.sql")


async def _raw_create(conn: asyncpg.Connection, tool_id: str) -> None:
    """The repository's create statement on a raw connection, to hold transactions open."""
    reg = registration(tool_id)
    await conn.fetchrow(
        Q["create_registration"],
        reg.tool_id,
        reg.node_type.value,
        '{"operations": ["analyze"]}',
        "{}",
        "{}",
        None,  # health_endpoint
        None,  # owner
    )


async def test_every_change_is_an_event_in_order(repository: ToolRegistrationRepository) -> None:
    await repository.create_registration(registration("a"))
    await repository.update_registration("a", ModelToolRegistrationUpdate(metadata={"v": 2}))
    await repository.upsert_registration(registration("b"))
    await repository.delete_registration("a", reason="test cleanup")
    events = await repository.changes()
    assert [(e.kind, e.tool_id) for e in events] == [
        (ChangeKind.CREATED, "a"),
        (ChangeKind.UPDATED, "a"),
        (ChangeKind.CREATED, "b"),
        (ChangeKind.DELETED, "a"),
    ]
    assert events[1].registration is not None
    assert events[1].registration.metadata == {"v": 2}
    assert events[3].reason == "test cleanup"
    assert events[3].registration is not None and events[3].registration.tool_id == "a"
    assert len({e.cursor for e in events}) == 4
    # Resuming from any cursor yields exactly what came after it.
    for index, event in enumerate(events):
        after = await repository.changes(event.cursor)
        assert [e.cursor for e in after] == [e.cursor for e in events[index + 1 :]]


async def test_limit_pages_through_the_feed(repository: ToolRegistrationRepository) -> None:
    await repository.create_registrations([registration(f"t{i:02d}") for i in range(25)])
    seen: list[str] = []
    cursor = None
    while batch := await repository.changes(cursor, limit=7):
        seen.extend(e.tool_id for e in batch)
        cursor = batch[-1].cursor
    assert seen == [f"t{i:02d}" for i in range(25)]


async def test_out_of_order_commit_is_neither_missed_nor_repeated(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    first = await asyncpg.connect(db_dsn)
    second = await asyncpg.connect(db_dsn)
    try:
        # `first` takes its transaction id early, then `second` writes an event
        # with a lower sequence number; `first` writes and commits while
        # `second` is still open. A plain sequence cursor would skip `second`'s.
        early = first.transaction()
        await early.start()
        await first.fetchval("SELECT pg_current_xact_id()")
        late = second.transaction()
        await late.start()
        await _raw_create(second, "late-commit")
        await _raw_create(first, "early-commit")
        await early.commit()

        seen = await repository.changes()
        assert [e.tool_id for e in seen] == ["early-commit"]
        cursor = seen[-1].cursor
        assert await repository.changes(cursor) == []

        await late.commit()
        after = await repository.changes(cursor)
        assert [e.tool_id for e in after] == ["late-commit"]
        assert await repository.changes(after[-1].cursor) == []
    finally:
        await first.close()
        await second.close()


async def test_events_wait_for_older_open_transactions(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    holder = await asyncpg.connect(db_dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await _raw_create(holder, "slow")
        await repository.create_registration(registration("fast"))
        # "fast" committed, but "slow" (older, open) could still add an event before it.
        assert await repository.changes() == []
        await tx.commit()
        assert [e.tool_id for e in await repository.changes()] == ["slow", "fast"]
    finally:
        await holder.close()


async def test_concurrent_writers_and_a_polling_reader_agree(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    rng = random.Random(7)
    writers = [await asyncpg.connect(db_dsn) for _ in range(4)]
    written: list[str] = []
    read: list[str] = []
    done = asyncio.Event()

    async def writer(conn: asyncpg.Connection, index: int) -> None:
        for n in range(15):
            tool_id = f"w{index}-{n:02d}"
            async with conn.transaction():
                await conn.fetchval("SELECT pg_current_xact_id()")
                await asyncio.sleep(rng.random() * 0.01)
                await _raw_create(conn, tool_id)
                await asyncio.sleep(rng.random() * 0.01)
            written.append(tool_id)

    async def reader() -> None:
        cursor = None
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if done.is_set() and deadline is None:
                # Writers are done; events may still wait for unrelated older
                # transactions on the server. Read until all arrived or 10 s passed.
                deadline = loop.time() + 10
            batch = await repository.changes(cursor)
            read.extend(e.tool_id for e in batch)
            if batch:
                cursor = batch[-1].cursor
            elif deadline is not None and (len(read) >= len(written) or loop.time() > deadline):
                return
            await asyncio.sleep(0.002)

    reading = asyncio.create_task(reader())
    try:
        await asyncio.gather(*(writer(c, i) for i, c in enumerate(writers)))
    finally:
        done.set()
        await reading
        for conn in writers:
            await conn.close()
    assert len(read) == len(set(read)), "an event was delivered twice"
    assert sorted(read) == sorted(written), "an event was missed"


async def test_watch_replays_then_follows(repository: ToolRegistrationRepository) -> None:
    await repository.create_registration(registration("before"))
    received: list[str] = []
    got_two = asyncio.Event()

    async def follow() -> None:
        async for event in repository.feed.watch(None, poll_interval=30.0):
            received.append(f"{event.kind}:{event.tool_id}")
            if len(received) == 2:
                got_two.set()
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await repository.create_registration(registration("after"))
    await asyncio.wait_for(got_two.wait(), timeout=4.0)
    # Delivered by NOTIFY, well before the 30 s poll.
    assert loop.time() - started < 2.5
    await task
    assert received == ["created:before", "created:after"]


async def test_pruned_cursor_needs_a_resync(repository: ToolRegistrationRepository) -> None:
    await repository.create_registrations([registration("old-1"), registration("old-2")])
    events = await repository.changes()
    await repository.client.execute(
        "UPDATE tool_registration_events SET occurred_at = now() - interval '3 days'"
    )
    await repository.create_registration(registration("new"))
    assert await repository.feed.prune(retention_seconds=86400) == 2
    with pytest.raises(ResyncRequiredError, match="retention"):
        await repository.changes(events[0].cursor)
    with pytest.raises(ResyncRequiredError):
        await repository.changes(None)
    # The newest pruned cursor is still a valid place to resume.
    assert [e.tool_id for e in await repository.changes(events[-1].cursor)] == ["new"]
    head = await repository.feed.head_cursor()
    assert await repository.changes(head) == []


async def test_head_cursor_means_new_only(repository: ToolRegistrationRepository) -> None:
    feed: ChangeFeed = repository.feed
    assert await feed.head_cursor() == "0-0"
    await repository.create_registration(registration("x"))
    head = await feed.head_cursor()
    await repository.create_registration(registration("y"))
    assert [e.tool_id for e in await feed.changes(head)] == ["y"]


@pytest.mark.parametrize("cursor", ["abc", "1", "1-2-3", "-1-2", "1-x"])
async def test_malformed_cursor_names_the_parameter(
    repository: ToolRegistrationRepository, cursor: str
) -> None:
    with pytest.raises(ValidationFailedError, match="since_cursor"):
        await repository.changes(cursor)


async def test_bad_limit_names_the_parameter(repository: ToolRegistrationRepository) -> None:
    kwargs: dict[str, Any] = {"limit": 0}
    with pytest.raises(ValidationFailedError, match="limit"):
        await repository.changes(None, **kwargs)


async def test_watch_catches_up_soon_after_an_older_transaction_ends(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    received: list[str] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        async for event in repository.feed.watch(None, poll_interval=30.0):
            received.append(event.tool_id)
            arrived.set()

    task = asyncio.create_task(follow())
    holder = await asyncpg.connect(db_dsn)
    try:
        await asyncio.sleep(0.2)
        tx = holder.transaction()
        await tx.start()
        await holder.fetchval("SELECT pg_current_xact_id()")  # an older, open transaction
        await repository.create_registration(
            registration("held-back")
        )  # notified, not yet readable
        await asyncio.sleep(0.3)
        assert received == []
        await tx.commit()  # no NOTIFY from this one: the watcher must look again by itself
        await asyncio.wait_for(arrived.wait(), timeout=5.0)  # far below the 30 s poll
        assert received == ["held-back"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await holder.close()
