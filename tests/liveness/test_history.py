"""Health history: "which tools were routable for operation X at time T", on a scripted timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from omninode_bridge.liveness import HealthChecker, HealthHistory, Reaper
from omninode_bridge.models import ModelToolRegistrationUpdate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import event_kinds, register

TTL = 2.0  # short, but with room for a loaded machine between steps


async def db_now(client: PostgresClient) -> datetime:
    value: datetime = await client.fetchval("SELECT clock_timestamp()")
    return value


async def test_routable_at_across_a_scripted_timeline(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
    make_reaper: Callable[..., Reaper],
) -> None:
    history = HealthHistory(postgres_client, TTL)
    checker = make_checker(ttl_seconds=TTL)
    reaper = make_reaper(ttl_seconds=TTL)

    async def mark() -> datetime:
        await repository.update_heartbeats(["a", "c"])  # a and c stay fresh throughout
        return await db_now(postgres_client)

    before = await db_now(postgres_client)
    await register(repository, "a", health=health_server.url("/a"))
    await register(repository, "b")
    await register(repository, "c", operations=["hash"])
    m0 = await mark()

    health_server.answer("/a", 503)  # a goes critical
    for _ in range(3):
        await checker.run_pass()
    m1 = await mark()

    b_seen = (await repository.get_registration("b")).last_heartbeat  # type: ignore[union-attr]
    await asyncio.sleep(TTL + 0.3)  # b stops heartbeating and goes stale
    await repository.update_heartbeats(["a", "c"])
    went_stale, _ = await reaper.sweep()
    assert went_stale == ["b"]
    m2 = await mark()

    health_server.answer("/a", 200)  # both come back
    for _ in range(2):
        await checker.run_pass()
    await repository.update_heartbeats(["a", "b", "c"])
    _, came_back = await reaper.sweep()
    assert came_back == ["b"]
    m3 = await mark()
    await repository.update_heartbeat("b")
    now_routable = [t.tool_id for t in await history.routable_tools("stamp")]

    update = ModelToolRegistrationUpdate(
        capabilities={"operations": ["hash"]}, endpoints={"hash": "http://127.0.0.1:9/hash"}
    )
    await repository.update_registration("b", update)  # b stops offering stamp
    m4 = await mark()
    await repository.delete_registration("a", reason="retired")
    m5 = await mark()

    async def stamp(at: datetime) -> list[str]:
        return await history.routable_at("stamp", at)

    assert await stamp(before) == []
    assert await stamp(m0) == ["a", "b"]
    assert await history.routable_at("hash", m0) == ["c"]
    assert await stamp(m1) == ["b"]  # a critical
    assert b_seen is not None
    assert await stamp(b_seen + timedelta(seconds=TTL / 2)) == ["b"]  # b still fresh then
    assert await stamp(b_seen + timedelta(seconds=TTL + 0.05)) == []  # stale from seen + TTL
    assert await stamp(m2) == []
    assert await stamp(m3) == ["a", "b"]
    assert now_routable == ["a", "b"]
    assert await stamp(m4) == ["a"]
    assert await history.routable_at("hash", m4) == ["b", "c"]
    assert await stamp(m5) == []
    assert await history.routable_at("hash", m5) == ["b", "c"]

    assert await event_kinds(repository, "a") == ["created", "critical", "passing", "deleted"]
    assert await event_kinds(repository, "b") == ["created", "stale", "healthy", "updated"]
    stale = [e for e in await history.history("b") if e.kind.value == "stale"]
    assert stale[0].occurred_at == b_seen + timedelta(seconds=TTL)  # dated when it expired
    assert [e.kind.value for e in await history.history("a")][-1] == "deleted"
    assert await history.get_health("a") is None  # removed, but its history stays


async def test_a_tool_whose_history_was_pruned_is_answered_from_its_row(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    history = HealthHistory(postgres_client, 300)
    before = await db_now(postgres_client)
    await register(repository, "old")
    await postgres_client.execute("DELETE FROM tool_registration_events")
    assert await history.history("old") == []
    assert await history.routable_at("stamp", await db_now(postgres_client)) == ["old"]
    assert await history.routable_at("stamp", before) == []


async def test_routable_at_respects_the_ttl_from_the_current_row(
    repository: ToolRegistrationRepository, postgres_client: PostgresClient
) -> None:
    history = HealthHistory(postgres_client, TTL)
    await register(repository, "x")
    seen = (await repository.get_registration("x")).last_heartbeat  # type: ignore[union-attr]
    assert seen is not None
    # No sweep ran: after the newest heartbeat, freshness comes from the row itself.
    assert await history.routable_at("stamp", seen + timedelta(seconds=TTL - 0.01)) == ["x"]
    assert await history.routable_at("stamp", seen + timedelta(seconds=TTL)) == []


async def test_a_heartbeat_given_in_the_past_never_dates_stale_before_registration(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    make_reaper: Callable[..., Reaper],
) -> None:
    history = HealthHistory(postgres_client, TTL)
    await register(repository, "late", heartbeat_age=3 * TTL)  # expired before it registered
    went_stale, _ = await make_reaper(ttl_seconds=TTL).sweep()
    assert went_stale == ["late"]
    created, stale = await history.history("late")
    assert (created.kind.value, stale.kind.value) == ("created", "stale")
    assert stale.occurred_at == created.occurred_at
    registered_at = created.occurred_at + timedelta(microseconds=1)
    assert await history.routable_at("stamp", registered_at) == []
    await repository.delete_registration("late")  # from events alone, too
    assert await history.routable_at("stamp", registered_at) == []
