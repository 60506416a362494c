"""HeartbeatCoalescer over TokenService.heartbeats on a real database: batches, per-request
answers, owner checks per id inside one batch, outages, cancellation and shutdown."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from omninode_bridge.errors import RegistryUnavailableError
from omninode_bridge.liveness import LivenessMetrics, Reaper
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.heartbeat_coalescer import HeartbeatCoalescer
from omninode_bridge.services.tokens import Principal, Scope, TokenService
from tests.support import base_settings, connection

Request = tuple[str, str]


async def register(repo: ToolRegistrationRepository, tool_id: str, secret: str | None) -> None:
    """Register ``tool_id`` owned by the token behind ``secret`` (None: no owner)."""
    owner = None
    if secret is not None:
        principal = await TokenService(repo.client).authenticate(secret)
        owner = principal.owner
    await repo.create_registration(
        ModelToolRegistrationCreate(tool_id=tool_id, node_type="effect"), owner=owner
    )


async def heartbeats_seen_elsewhere(dsn: str, tool_ids: Sequence[str]) -> dict[str, datetime]:
    """last_heartbeat of these tools, read on a connection of its own (not the pool's)."""
    async with connection(dsn) as conn:
        rows = await conn.fetch(
            "SELECT tool_id, last_heartbeat FROM tool_registrations WHERE tool_id = ANY($1)",
            list(tool_ids),
        )
    return {row["tool_id"]: row["last_heartbeat"] for row in rows}


async def db_now(client: PostgresClient) -> datetime:
    value = await client.fetchval("SELECT now()")
    assert isinstance(value, datetime)
    return value


async def secret(client: PostgresClient, scope: Scope) -> str:
    created = await TokenService(client).create(f"t-{scope.value}-{uuid.uuid4().hex[:8]}", scope)
    return created.secret


def coalescer(
    tokens: TokenService, *, window: float = 0.05, max_batch: int = 500
) -> HeartbeatCoalescer[Request, Principal | None]:
    return HeartbeatCoalescer(tokens.heartbeats, window=window, max_batch=max_batch)


def written(answers: Sequence[object]) -> list[bool]:
    """Which requests were written: the writer answered them with the token's principal."""
    return [isinstance(answer, Principal) for answer in answers]


async def writer_owning(
    repository: ToolRegistrationRepository, *tool_ids: str
) -> tuple[TokenService, str]:
    """The token service, and a new write token's secret that owns ``tool_ids``, registered
    here."""
    writer = await secret(repository.client, Scope.WRITE)
    for tool_id in tool_ids:
        await register(repository, tool_id, writer)
    return TokenService(repository.client), writer


async def test_concurrent_heartbeats_share_a_batch_and_are_durable_when_answered(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient, db_dsn: str
) -> None:
    ids = [f"tool-{i:03d}" for i in range(200)]
    tokens, writer = await writer_owning(repository, *ids)
    start = await db_now(postgres_client)
    hb = coalescer(tokens, window=0.05)
    try:
        answers = await asyncio.gather(*(hb.submit((writer, tool_id)) for tool_id in ids))
        # Answered means committed: another connection sees every heartbeat at once.
        seen = await heartbeats_seen_elsewhere(db_dsn, ids)
    finally:
        await hb.aclose()
    assert written(answers) == [True] * len(ids)
    assert {a.name for a in answers if a is not None} == {(await tokens.authenticate(writer)).name}
    assert all(seen[tool_id] > start for tool_id in ids)
    assert hb.requests == len(ids) and hb.batches == 1


async def test_owner_is_checked_per_request_inside_one_batch(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient, db_dsn: str
) -> None:
    tokens = TokenService(postgres_client)
    alice, bob = (
        await secret(postgres_client, Scope.WRITE),
        await secret(postgres_client, Scope.WRITE),
    )
    admin, reader = (
        await secret(postgres_client, Scope.ADMIN),
        await secret(postgres_client, Scope.READ),
    )
    for tool_id, owner in [("a1", alice), ("a2", alice), ("b1", bob), ("b2", bob)]:
        await register(repository, tool_id, owner)
    before = await heartbeats_seen_elsewhere(db_dsn, ["a1", "a2", "b1", "b2"])
    requests: list[Request] = [
        (alice, "a1"),  # own tool
        (alice, "b2"),  # bob's: refused, and b2 stays untouched
        (bob, "b1"),  # own tool, other owner, same batch
        (alice, "a1"),  # a duplicate gets its own answer
        (admin, "a2"),  # admin may beat any tool
        (reader, "b1"),  # read scope: refused even though b1 is written for bob
        (alice, "ghost"),  # not registered
        ("trg_not-a-token", "a1"),  # unknown token
        ("garbage", "a1"),  # not even shaped like one
        (bob, "a1"),  # bob on alice's tool, which alice beats in this very batch
    ]
    hb = coalescer(tokens, window=0.05)
    try:
        answers = await asyncio.gather(*(hb.submit(r) for r in requests))
    finally:
        await hb.aclose()
    assert hb.batches == 1
    assert written(answers) == [True, False, True, True, True, False, False, False, False, False]
    after = await heartbeats_seen_elsewhere(db_dsn, ["a1", "a2", "b1", "b2"])
    assert after["a1"] > before["a1"] and after["a2"] > before["a2"]
    assert after["b1"] > before["b1"]
    assert after["b2"] == before["b2"]


async def test_a_heartbeat_that_would_move_backwards_is_left_to_the_slow_path(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    # As the single statement: a heartbeat given in the future is not rewound by the
    # fast path; the route's slow path does it and records the rewind.
    tokens, writer = await writer_owning(repository, "ahead", "plain")
    future = await db_now(postgres_client) + timedelta(seconds=30)
    assert await repository.update_heartbeat("ahead", future)
    hb = coalescer(tokens)
    try:
        answers = await asyncio.gather(hb.submit((writer, "ahead")), hb.submit((writer, "plain")))
    finally:
        await hb.aclose()
    assert written(answers) == [False, True]
    assert await tokens.heartbeat(writer, "ahead") is None  # the same verdict, one at a time


async def test_max_batch_splits_and_the_rest_goes_next(
    repository: ToolRegistrationRepository,
) -> None:
    tokens, writer = await writer_owning(repository, "t")
    sizes: list[int] = []

    async def write(batch: Sequence[Request]) -> Sequence[Principal | None]:
        sizes.append(len(batch))
        return await tokens.heartbeats(batch)

    hb = HeartbeatCoalescer(write, window=10.0, max_batch=4)  # the window never ends one
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(hb.submit((writer, "t")) for _ in range(8))), 5
        )
    finally:
        await hb.aclose()
    assert written(answers) == [True] * 8
    assert sizes == [4, 4]


async def test_an_outage_mid_batch_fails_that_batch_only_then_it_recovers(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    ids = [f"t{i}" for i in range(20)]
    tokens, writer = await writer_owning(repository, *ids)
    outages = 0

    async def write(batch: Sequence[Request]) -> Sequence[Principal | None]:
        nonlocal outages
        if outages == 0:  # the first batch: its backend is killed while it writes
            outages += 1
            admin = await asyncpg.connect(db_dsn)
            try:
                async with admin.transaction():  # holds one row: the batch waits for it
                    await admin.execute(
                        "SELECT 1 FROM tool_registrations WHERE tool_id = $1 FOR UPDATE", ids[0]
                    )
                    writing = asyncio.create_task(tokens.heartbeats(batch))
                    killed = 0
                    for _ in range(500):
                        killed = await admin.fetchval(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        if killed:
                            break
                        await asyncio.sleep(0.01)
                    assert killed == 1
            finally:
                await admin.close()
            return await writing
        return await tokens.heartbeats(batch)

    hb = HeartbeatCoalescer(write, window=0.05, max_batch=500)
    try:
        first = await asyncio.gather(
            *(hb.submit((writer, tool_id)) for tool_id in ids), return_exceptions=True
        )
        # Every request of the batch gets the outage, typed (the route's 503), none hangs.
        assert all(isinstance(answer, RegistryUnavailableError) for answer in first), first
        # The coalescer keeps working: the pool replaces the dead connections.
        answers: list[Principal | BaseException | None] = []
        for _ in range(12):
            answers = await asyncio.gather(
                *(hb.submit((writer, tool_id)) for tool_id in ids), return_exceptions=True
            )
            if written(answers) == [True] * len(ids):
                break
        assert written(answers) == [True] * len(ids)
    finally:
        await hb.aclose()


async def test_a_writer_error_reaches_every_waiter_and_the_next_batch_works(
    repository: ToolRegistrationRepository,
) -> None:
    tokens, writer = await writer_owning(repository, "t")
    calls = 0

    async def write(batch: Sequence[Request]) -> Sequence[Principal | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return [None]  # one answer for the whole batch: a bug, reported to each
        return await tokens.heartbeats(batch)

    hb = HeartbeatCoalescer(write, window=0.05, max_batch=500)
    try:
        first = await asyncio.gather(
            *(hb.submit((writer, "t")) for _ in range(3)), return_exceptions=True
        )
        assert [type(x) for x in first] == [RuntimeError] * 3
        assert await hb.submit((writer, "t")) is not None
    finally:
        await hb.aclose()


async def test_a_cancelled_waiter_leaves_its_batch_intact(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    tokens, writer = await writer_owning(repository, "gone", "stays")
    before = await heartbeats_seen_elsewhere(db_dsn, ["gone", "stays"])
    hb = coalescer(tokens, window=0.2)
    try:
        gone = asyncio.create_task(hb.submit((writer, "gone")))
        stays = asyncio.create_task(hb.submit((writer, "stays")))
        await asyncio.sleep(0.05)  # both are in the open batch
        gone.cancel()
        assert await stays is not None
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await hb.aclose()
    after = await heartbeats_seen_elsewhere(db_dsn, ["gone", "stays"])
    assert after["stays"] > before["stays"]
    assert after["gone"] > before["gone"]  # written all the same; nobody read the answer
    assert hb.batches == 1


async def test_close_writes_what_is_pending_then_refuses(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    tokens, writer = await writer_owning(repository, "t")
    before = await heartbeats_seen_elsewhere(db_dsn, ["t"])
    hb = coalescer(tokens, window=60.0)  # nothing but aclose() ends this window
    waiting = [asyncio.create_task(hb.submit((writer, "t"))) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    await asyncio.wait_for(hb.aclose(), 5)
    assert written([task.result() for task in waiting]) == [True] * 5
    assert (await heartbeats_seen_elsewhere(db_dsn, ["t"]))["t"] > before["t"]
    with pytest.raises(RegistryUnavailableError, match="shutting down"):
        await hb.submit((writer, "t"))
    await hb.aclose()  # idempotent


async def test_close_during_a_batch_writes_the_backlog_without_waiting_windows(
    repository: ToolRegistrationRepository,
) -> None:
    tokens, writer = await writer_owning(repository, "t")
    gate = asyncio.Event()
    sizes: list[int] = []

    async def write(batch: Sequence[Request]) -> Sequence[Principal | None]:
        sizes.append(len(batch))
        if len(sizes) == 1:
            await gate.wait()  # the first batch is in flight while the others arrive
        return await tokens.heartbeats(batch)

    hb = HeartbeatCoalescer(write, window=60.0, max_batch=2)
    waiting = [asyncio.create_task(hb.submit((writer, "t"))) for _ in range(2)]
    await asyncio.sleep(0.05)
    waiting += [asyncio.create_task(hb.submit((writer, "t"))) for _ in range(5)]
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(hb.aclose())
    gate.set()
    await asyncio.wait_for(closing, 5)  # not 60 s for the last, lone request
    assert written([task.result() for task in waiting]) == [True] * 7
    assert sizes == [2, 2, 2, 1]


async def test_a_cancelled_close_fails_the_pending_rather_than_leave_them_hanging() -> None:
    started = asyncio.Event()

    async def stuck(batch: Sequence[Request]) -> Sequence[bool]:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    hb: HeartbeatCoalescer[Request, bool] = HeartbeatCoalescer(stuck, window=0.001, max_batch=2)
    waiting = [asyncio.create_task(hb.submit(("s", f"t{i}"))) for i in range(5)]
    await started.wait()
    closing = asyncio.create_task(hb.aclose())
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(r, RegistryUnavailableError) for r in results), results


@pytest.mark.parametrize(("window", "max_batch"), [(-0.001, 10), (0.005, 0)])
def test_bad_parameters_are_refused(window: float, max_batch: int) -> None:
    async def write(batch: Sequence[Request]) -> Sequence[bool]:
        return [True] * len(batch)

    with pytest.raises(ValueError, match=r"window|max_batch"):
        HeartbeatCoalescer(write, window=window, max_batch=max_batch)


async def test_liveness_sees_a_batched_heartbeat_as_it_sees_a_single_one(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    tokens, writer = await writer_owning(repository, "single", "batched")
    reaper = Reaper(
        postgres_client,
        base_settings(ttl_seconds=2.0, pool_max_size=2),
        LivenessMetrics(CollectorRegistry()),
    )
    long_ago = await db_now(postgres_client) - timedelta(seconds=60)
    for tool_id in ("single", "batched"):
        assert await repository.update_heartbeat(tool_id, long_ago)
    went_stale, _ = await reaper.sweep()
    assert sorted(went_stale) == ["batched", "single"]

    assert await tokens.heartbeat(writer, "single")
    hb = coalescer(tokens)
    try:
        assert await hb.submit((writer, "batched"))
    finally:
        await hb.aclose()
    _, came_back = await reaper.sweep()
    assert sorted(came_back) == ["batched", "single"]
    kinds = {
        tool_id: [
            e.kind.value for e in await repository.changes(None, 1000) if e.tool_id == tool_id
        ]
        for tool_id in ("single", "batched")
    }
    assert kinds["batched"] == kinds["single"] == ["created", "stale", "healthy"]
