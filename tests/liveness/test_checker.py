"""Active health checks against real HTTP endpoints on loopback, results stored in PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

from omninode_bridge.liveness import (
    CheckStatus,
    HealthChecker,
    HealthHistory,
    LivenessMetrics,
    make_check_client,
    probe,
)
from omninode_bridge.liveness.checker import Q
from omninode_bridge.liveness.leader import LEASE_NAME
from omninode_bridge.models import ModelToolRegistrationUpdate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import event_kinds, liveness_settings, register

P, C, U = CheckStatus.PASSING, CheckStatus.CRITICAL, CheckStatus.UNKNOWN


async def status_after(checker: HealthChecker, tool_id: str) -> CheckStatus:
    report = await checker.run_pass()
    (result,) = [r for r in report.results if r.tool_id == tool_id]
    assert result.recorded
    return result.after.status


async def test_anti_flap_sequence_end_to_end(
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
    metrics: LivenessMetrics,
) -> None:
    await register(repository, "svc", health=health_server.url("/health"))
    checker = make_checker()
    script = [503, 503, 200, 503, 500, 503, 200, 503, 200, 200]
    expected = [P, P, P, P, P, C, C, C, C, P]
    health_server.script("/health", script)
    statuses = [await status_after(checker, "svc") for _ in script]
    assert statuses == expected
    assert health_server.hits["/health"] == len(script)
    assert await event_kinds(repository, "svc") == ["created", "critical", "passing"]
    events = [e for e in await repository.changes(None, 100) if e.tool_id == "svc"]
    assert events[1].reason is not None
    assert events[1].reason.startswith("3 consecutive failed checks (threshold 3); last: HTTP 503")
    assert events[1].registration is None
    assert events[2].reason == "2 consecutive passing checks (threshold 2)"
    assert metrics.checks.labels("failure")._value.get() == 6
    assert metrics.checks.labels("success")._value.get() == 4
    assert metrics.check_transitions.labels("critical")._value.get() == 1


async def test_a_tool_without_health_endpoint_is_unknown(
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    await register(repository, "plain")
    await register(repository, "checked", health=health_server.url("/ok"))
    report = await make_checker().run_pass()
    by_id = {r.tool_id: r for r in report.results}
    assert by_id["plain"].after.status is U and by_id["plain"].probe is None
    assert by_id["checked"].after.status is P and by_id["checked"].probe is not None
    assert report.counts() == {"passing": 1, "critical": 0, "unknown": 1}


async def test_critical_tool_leaves_routing_and_returns_when_it_recovers(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    history = HealthHistory(postgres_client, ttl_seconds=300)
    await register(repository, "a", health=health_server.url("/a"))
    await register(repository, "b", health=health_server.url("/b"))
    await register(repository, "c")  # no health endpoint: heartbeats alone
    checker = make_checker()

    async def routable() -> list[str]:
        return [t.tool_id for t in await history.routable_tools("stamp")]

    assert await routable() == ["a", "b", "c"]
    health_server.answer("/a", 503)
    for _ in range(2):
        await checker.run_pass()
        assert await routable() == ["a", "b", "c"]  # two failures: still routable
    await checker.run_pass()
    assert await routable() == ["b", "c"]
    assert await history.critical_tool_ids() == {"a"}
    health = await history.get_health("a")
    assert health is not None and health.check_status is C and not health.routable
    assert health.last_error is not None and health.last_error.startswith("HTTP 503")

    health_server.answer("/a", 200)
    await checker.run_pass()
    assert await routable() == ["b", "c"]  # one success is not enough
    await checker.run_pass()
    assert await routable() == ["a", "b", "c"]
    assert await history.critical_tool_ids() == set()


async def test_removing_the_health_endpoint_of_a_critical_tool_makes_it_routable(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    await register(repository, "a", health=health_server.url("/down"))
    health_server.answer("/down", 500)
    checker = make_checker()
    for _ in range(3):
        await checker.run_pass()
    await repository.update_registration("a", ModelToolRegistrationUpdate(health_endpoint=None))
    assert await status_after(checker, "a") is U
    events = [e for e in await repository.changes(None, 100) if e.tool_id == "a"]
    assert [e.kind.value for e in events] == ["created", "critical", "updated", "passing"]
    assert events[-1].reason == "health endpoint removed: heartbeats alone decide"
    assert await HealthHistory(postgres_client, 300).critical_tool_ids() == set()


async def test_a_result_is_stored_only_on_the_state_it_was_computed_from(
    repository: ToolRegistrationRepository,
    postgres_client: PostgresClient,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    await register(repository, "a", health=health_server.url("/ok"))
    await make_checker().run_pass()  # stored with generation 1

    async def store(generation: int) -> list[str]:
        row = await postgres_client.fetchrow(
            Q["record_checks"],
            ["a"], ["critical"], [3], [0], [True], [1.0], ["x"], [generation],
            ["critical"], ["r"], None, LEASE_NAME,
        )  # fmt: skip
        assert row is not None and row["leading"]
        return list(row["tool_ids"])

    assert await store(0) == []  # computed from a state another pass already moved
    assert await event_kinds(repository, "a") == ["created"]
    assert await store(1) == ["a"]
    assert await event_kinds(repository, "a") == ["created", "critical"]


async def test_concurrency_is_bounded(
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    for i in range(20):
        health_server.answer(f"/slow/{i}", delay=0.2)
        await register(repository, f"t{i:02}", health=health_server.url(f"/slow/{i}"))
    started = time.perf_counter()
    report = await make_checker(check_concurrency=5).run_pass()
    elapsed = time.perf_counter() - started
    assert all(r.probe is not None and r.probe.ok for r in report.results)
    assert health_server.max_in_flight == 5
    assert 0.8 <= elapsed < 5


async def test_a_check_times_out(
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    health_server.answer("/hang", delay=30)
    await register(repository, "hang", health=health_server.url("/hang"))
    started = time.perf_counter()
    report = await make_checker(check_timeout_seconds=0.3).run_pass()
    assert time.perf_counter() - started < 3
    (result,) = report.results
    assert result.probe is not None and not result.probe.ok
    assert result.probe.error is not None and "0.3s" in result.probe.error


async def test_probe_rules(health_server: HealthServer) -> None:
    async with make_check_client(liveness_settings()) as http:

        async def check(path: str, host: str = "127.0.0.1") -> tuple[bool, str | None]:
            result = await probe(http, health_server.url(path, host), timeout=2)
            return result.ok, result.error

        health_server.answer("/moved", 302, headers={"location": "/ok"})
        assert await check("/moved") == (True, None)  # same host: followed
        health_server.answer(
            "/away", 302, headers={"location": health_server.url("/ok", "localhost")}
        )
        ok, error = await check("/away")
        assert not ok and error is not None and "redirect to another host (localhost)" in error
        health_server.answer("/loop", 302, headers={"location": "/loop"})
        assert await check("/loop") == (False, "more than 3 redirects")
        health_server.answer("/nobody", 204, body=b"")
        assert await check("/nobody") == (True, None)
        health_server.answer("/missing", 404, body=b"no such page")
        assert await check("/missing") == (False, "HTTP 404: no such page")
        big = 50 * 1024 * 1024
        health_server.answer("/big", body_size=big)
        assert await check("/big") == (True, None)
        assert health_server.bytes_sent < big // 2  # the rest was never read
        result = await probe(http, "ftp://127.0.0.1/health", timeout=1)
        assert not result.ok and result.error is not None and "http/https" in result.error
        closed = health_server.url("/")
        await health_server.close()
        result = await probe(http, closed, timeout=1)
        assert not result.ok and result.error is not None and result.error.startswith("Connect")
