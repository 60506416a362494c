"""Failover: dead ports, resets, stale and killed tools never fail a call while another is live.

A request that never reached a tool (refused) moves on to the next tool; one
that may have reached it (reset, read timeout, 5xx) is not repeated unless the
call says the operation is idempotent (see test_call_safety.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from omninode_bridge.errors import ToolCallError
from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from tests.services.discovery.helpers import (
    FAST,
    ToolFactory,
    discovery_settings,
    register,
    until,
)
from tests.services.discovery.tool_server import Reply, ToolProcess, ToolServer
from tests.support import free_port


async def routable(service: ToolDiscoveryService, count: int, operation: str = "stamp") -> None:
    async def enough() -> bool:
        return len(await service.routable_tools(operation)) >= count

    await until(service, enough, 2.0)


async def test_a_dead_port_never_fails_a_call_and_is_ejected_with_growing_backoff(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    live = await http_tool("live")
    dead_url = f"http://127.0.0.1:{free_port()}"
    await register(repository, "dead", dead_url)
    await register(repository, "live", live.url())
    await routable(service, 2)
    for n in range(40):
        assert (await service.route_request("stamp", {"n": n}))["tool"] == "live"
        if service.metrics.ejections:
            break
    assert service.metrics.ejections == 1
    assert 0 < service.index.ejected()["dead"] <= 0.5
    # While ejected it is not tried; once the 0.5 s are over it is, and sits out 1 s.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while service.metrics.ejections < 2:
        assert loop.time() < deadline, "the dead tool never came back for another try"
        assert (await service.route_request("stamp", {}))["tool"] == "live"
        await asyncio.sleep(0.02)  # pace the calls; the backoff is what we wait for
    assert 0.5 < service.index.ejected()["dead"] <= 1.0
    assert service.ejection.failures("dead") == 2
    assert service.metrics.call_failures == 0


async def test_a_lone_dead_tool_is_a_clear_error_and_comes_back_on_success(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    await register(repository, "lonely", url)
    await routable(service, 1)
    with pytest.raises(ToolCallError) as info:
        await service.route_request("stamp", {})
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.tool_id == "lonely" and error.endpoint == f"{url}/stamp"
    assert error.status is None
    assert "could not be reached (ConnectError" in str(error)
    assert "lonely" in service.index.ejected()
    # Ejected, yet the only candidate: it is probed, and its success restores it.
    async with ToolServer("lonely", port=port) as tool:
        assert (await service.route_request("stamp", {}))["tool"] == "lonely"
        assert service.index.ejected() == {}
        assert service.ejection.failures("lonely") == 0
        assert len(tool.requests) == 1


async def test_a_tool_that_resets_is_ejected_and_idempotent_calls_move_on(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    # Reset before reading a byte; yet the caller cannot tell that from a reset
    # after the tool acted, so only an idempotent call moves on.
    resetter, live = await http_tool("resetter", Reply(reset=True)), await http_tool("live")
    await register(repository, "resetter", resetter.url())
    await register(repository, "live", live.url())
    await routable(service, 2)
    for _ in range(30):
        assert (await service.route_request("stamp", {}, idempotent=True))["tool"] == "live"
    assert service.metrics.ejections >= 1
    assert service.metrics.call_failures == 0


async def test_a_stale_tool_is_never_chosen(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    ttl = 1.0
    stale, live, old = await http_tool("stale"), await http_tool("live"), await http_tool("old")
    await register(repository, "old", old.url())
    # Stale before the service even starts.
    await repository.update_heartbeat("old", datetime.now(UTC) - timedelta(seconds=ttl + 5))
    await register(repository, "live", live.url())
    settings = discovery_settings(ttl_seconds=ttl)
    async with ToolDiscoveryService(repository, settings, tuning=FAST) as service:
        registration = await register(repository, "stale", stale.url())
        assert registration.last_heartbeat is not None
        deadline = registration.last_heartbeat.timestamp() + ttl

        async def keep_alive() -> None:
            while True:
                await repository.update_heartbeat("live")
                await asyncio.sleep(0.1)  # the live tool's heartbeat period

        beating = asyncio.create_task(keep_alive())
        try:
            await routable(service, 2)
            picked_stale_at: list[float] = []
            while time.time() < deadline + 1.0:
                before = time.time()
                found = await service.discover_tool("stamp")
                assert found is not None
                if found.tool_id == "stale":
                    picked_stale_at.append(before)
                result = await service.route_request("stamp", {})
                assert result["tool"] in {"live", "stale"}
                await asyncio.sleep(0.005)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
    assert picked_stale_at, "the fresh tool was never chosen while it was fresh"
    assert max(picked_stale_at) < deadline
    assert all(t < deadline + 0.05 for t in stale.times), "a request reached a stale tool"
    assert old.requests == []


@pytest.fixture
async def victim_and_survivor(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService
) -> AsyncIterator[tuple[ToolProcess, ToolProcess]]:
    """Two tool processes offering ``stamp``, registered and routable; both killed after."""
    victim, survivor = ToolProcess("victim"), ToolProcess("survivor")
    try:
        await register(repository, "victim", victim.url())
        await register(repository, "survivor", survivor.url())
        await routable(service, 2)
        yield victim, survivor
    finally:
        victim.kill()
        survivor.kill()


async def test_a_tool_killed_mid_run_never_fails_a_call(
    service: ToolDiscoveryService, victim_and_survivor: tuple[ToolProcess, ToolProcess]
) -> None:
    victim, _ = victim_and_survivor
    answered: list[str] = []
    for n in range(200):
        if n == 60:
            victim.kill()  # its pooled keep-alive connections die with it
        answered.append((await service.route_request("stamp", {"n": n}))["tool"])
    assert "victim" in answered[:60]
    assert set(answered[60:]) == {"survivor"}
    assert service.metrics.ejections >= 1


async def test_concurrent_idempotent_calls_survive_a_kill_at_any_moment(
    service: ToolDiscoveryService, victim_and_survivor: tuple[ToolProcess, ToolProcess]
) -> None:
    victim, _ = victim_and_survivor
    answered: list[str] = []
    killed_after: list[int] = []
    warmed_up = asyncio.Event()

    async def worker() -> None:
        for n in range(80):
            result = await service.route_request("stamp", {"n": n}, idempotent=True)
            answered.append(result["tool"])
            if len(answered) >= 60:
                warmed_up.set()

    async def killer() -> None:
        await warmed_up.wait()
        await asyncio.sleep(random.uniform(0, 0.05))  # a random moment mid-run
        killed_after.append(len(answered))
        victim.kill()

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(6)), killer())
    assert len(answered) == 480
    assert 0 < killed_after[0] < 480, "the kill did not happen mid-run"
    assert "victim" in answered[: killed_after[0]]
    assert service.metrics.call_failures == 0


@pytest.mark.parametrize("idempotent", [False, True])
async def test_read_timeouts_are_repeated_only_for_idempotent_calls(
    repository: ToolRegistrationRepository,
    service: ToolDiscoveryService,
    http_tool: ToolFactory,
    idempotent: bool,
) -> None:
    slow, fast = await http_tool("slow", Reply(delay=5.0)), await http_tool("fast")
    await register(repository, "slow", slow.url())
    await register(repository, "fast", fast.url())
    await routable(service, 2)
    succeeded = 0
    errors: list[ToolCallError] = []
    for _ in range(40):
        try:
            await service.route_request("stamp", {}, idempotent=idempotent, timeout=0.2)
        except ToolCallError as error:
            errors.append(error)
        else:
            succeeded += 1
        if len(slow.requests) >= 3:
            break
    assert len(slow.requests) >= 3
    assert {e.tool_id for e in errors} <= {"slow"}
    assert all("gave no answer (ReadTimeout" in str(e) for e in errors)
    if idempotent:
        assert errors == []
        assert len(fast.requests) == succeeded  # including the retried ones
    else:
        assert len(errors) == len(slow.requests)  # each slow pick failed, never moved on
        assert len(fast.requests) == succeeded
    assert service.metrics.ejections == 0  # it was reached: not a connect failure


@pytest.mark.parametrize("idempotent", [False, True])
async def test_5xx_is_repeated_only_for_idempotent_calls(
    repository: ToolRegistrationRepository,
    service: ToolDiscoveryService,
    http_tool: ToolFactory,
    idempotent: bool,
) -> None:
    broken = await http_tool("broken", Reply(status=503, body=b"down", content_type="text/plain"))
    fine = await http_tool("fine")
    await register(repository, "broken", broken.url())
    await register(repository, "fine", fine.url())
    await routable(service, 2)
    errors: list[ToolCallError] = []
    for _ in range(40):
        try:
            await service.route_request("stamp", {}, idempotent=idempotent)
        except ToolCallError as error:
            errors.append(error)
        if len(broken.requests) >= 3:
            break
    assert len(broken.requests) >= 3
    assert {(e.tool_id, e.status, e.body_excerpt) for e in errors} <= {("broken", 503, "down")}
    assert len(errors) == (0 if idempotent else len(broken.requests))


async def test_attempts_are_bounded(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    for i in range(5):
        await register(repository, f"dead-{i}", f"http://127.0.0.1:{free_port()}")
    settings = discovery_settings(route_max_attempts=3)
    async with ToolDiscoveryService(repository, settings, tuning=FAST) as service:
        with pytest.raises(ToolCallError) as info:
            await service.route_request("stamp", {})
        assert "3 tools tried, at most 3 attempts" in str(info.value)
        assert len(service.index.ejected()) == 3
        with pytest.raises(ToolCallError, match="1 tool tried, at most 1 attempts"):
            await service.route_request("stamp", {}, max_attempts=1)
