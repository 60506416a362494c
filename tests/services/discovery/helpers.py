"""What the discovery tests share besides fixtures: tuning, settings, registering tools,
waiting for the index, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from omninode_bridge.models import ModelToolRegistration, ModelToolRegistrationCreate
from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from omninode_bridge.services.discovery import DiscoveryMetrics, DiscoveryTuning
from omninode_bridge.settings import Settings
from tests.services.discovery.tool_server import ToolServer
from tests.support import base_settings

# Quick background work, so that the tests' bounds hold with margin.
FAST = DiscoveryTuning(
    heartbeat_interval=0.1, feed_poll_interval=0.25, stall_seconds=1.5, reconnect_max=0.5
)


def discovery_settings(**overrides: float) -> Settings:
    """Test settings: a small pool, short HTTP timeouts and ejections."""
    defaults: dict[str, Any] = {
        "http_connect_timeout": 1.0,
        "http_read_timeout": 5.0,
        "eject_base_seconds": 0.5,
        "eject_max_seconds": 4.0,
    }
    return base_settings(**(defaults | overrides))


def tool_create(
    tool_id: str, endpoint_base: str | None, operations: tuple[str, ...] = ("stamp",)
) -> ModelToolRegistrationCreate:
    """A registration offering ``operations``, each at ``<endpoint_base>/<op>`` (none if None)."""
    endpoints = {op: f"{endpoint_base}/{op}" for op in operations} if endpoint_base else {}
    return ModelToolRegistrationCreate(
        tool_id=tool_id,
        node_type="effect",
        capabilities={"operations": list(operations)},
        endpoints=endpoints,
    )


async def register(
    repository: ToolRegistrationRepository,
    tool_id: str,
    endpoint_base: str | None,
    operations: tuple[str, ...] = ("stamp",),
) -> ModelToolRegistration:
    registration, _ = await repository.upsert_registration(
        tool_create(tool_id, endpoint_base, operations)
    )
    return registration


async def until(
    service: ToolDiscoveryService, check: Callable[[], Awaitable[bool]], timeout: float
) -> float:
    """Wait for index updates until ``check()`` holds; the seconds it took (TimeoutError past)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(timeout):
        while not await check():
            await service.wait_for_update()
    return float(loop.time() - started)


class MetricsWatcher:
    """Metrics a test can await a condition on (polled: the service reports no changes)."""

    def __init__(self) -> None:
        self.metrics = DiscoveryMetrics()

    async def reach(self, predicate: Callable[[DiscoveryMetrics], bool], timeout: float) -> None:
        """Wait (at most ``timeout``) until ``predicate(metrics)`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                if predicate(self.metrics):
                    return
                await asyncio.sleep(0.01)


ToolFactory = Callable[..., Awaitable[ToolServer]]
