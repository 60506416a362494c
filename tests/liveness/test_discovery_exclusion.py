"""Discovery never routes to a critical tool, in this process and in a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from omninode_bridge.liveness import HealthChecker
from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import register


async def _chosen(discovery: ToolDiscoveryService, rounds: int = 40) -> set[str]:
    picked: set[str] = set()
    for _ in range(rounds):
        tool = await discovery.discover_tool("stamp")
        if tool is not None:
            picked.add(tool.tool_id)
    return picked


async def _until(discovery: ToolDiscoveryService, expected: set[str]) -> set[str]:
    seen: set[str] = set()
    for _ in range(100):  # the feed delivers within milliseconds; allow 5 s
        seen = await _chosen(discovery)
        if seen == expected:
            break
        await asyncio.sleep(0.05)
    return seen


async def test_critical_tool_leaves_discovery_and_returns(
    repository: ToolRegistrationRepository,
    health_server: HealthServer,
    make_checker: Callable[..., HealthChecker],
) -> None:
    await register(repository, "a", health=health_server.url("/a"))
    await register(repository, "b", health=health_server.url("/b"))
    checker = make_checker()
    async with ToolDiscoveryService(repository) as discovery:
        assert await _until(discovery, {"a", "b"}) == {"a", "b"}
        health_server.answer("/a", 503)
        for _ in range(3):
            await checker.run_pass()
        assert await _until(discovery, {"b"}) == {"b"}
        # A service that starts now learns the critical set when it loads.
        async with ToolDiscoveryService(repository) as fresh:
            assert await _chosen(fresh) == {"b"}
        health_server.answer("/a", 200)
        for _ in range(2):
            await checker.run_pass()
        assert await _until(discovery, {"a", "b"}) == {"a", "b"}
