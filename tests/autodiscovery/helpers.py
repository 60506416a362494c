"""Helpers of the auto-discovery tests: registrations as etcd values, bounded waits, bridges."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from omninode_bridge.autodiscovery import BridgeMetrics, DiscoveryBridge, EtcdSource, RemovalMode
from omninode_bridge.services import ToolRegistrationRepository
from tests.autodiscovery.etcd_server import EtcdServer

__all__ = ["Bridges", "metric", "registration_value", "until_metric", "wait_until"]

WAIT = 10.0  # seconds: the bound of every wait in these tests


def registration_value(tool_id: str, **overrides: Any) -> bytes:
    """A valid registration as the JSON a tool puts into etcd."""
    body: dict[str, Any] = {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": ["search"], "region": "eu"},
        "endpoints": {"search": f"http://127.0.0.1:9/{tool_id}/search"},
        "metadata": {"version": "1.0.0"},
        "health_endpoint": f"http://127.0.0.1:9/{tool_id}/health",
    }
    body.update(overrides)
    return orjson.dumps(body)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = WAIT, interval: float = 0.01
) -> float:
    """Poll ``check`` until true; the monotonic time it became true. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def metric(metrics: BridgeMetrics, name: str, **labels: str) -> float:
    """A sample's value from the bridge's registry (0 when never set)."""
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def until_metric(metrics: BridgeMetrics, name: str, expected: float, **labels: str) -> None:
    """Wait (bounded) for a sample to reach ``expected``: the bridge counts right after a
    write commits, so a test that saw the write may run a moment before the count."""

    async def reached() -> bool:
        return metric(metrics, name, **labels) == expected

    await wait_until(reached)


class Bridges:
    """Bridges on one etcd prefix and one database, run as tasks, all stopped at the end."""

    def __init__(
        self, etcd: EtcdServer, repository: ToolRegistrationRepository, prefix: str
    ) -> None:
        self.etcd = etcd
        self.repository = repository
        self.prefix = prefix
        self._tasks: dict[DiscoveryBridge, asyncio.Task[None]] = {}

    def make(
        self,
        *,
        mode: RemovalMode = RemovalMode.DELETE,
        refresh_interval: float = 60.0,
        metrics: BridgeMetrics | None = None,
        claim_hold_seconds: float = 3600.0,
    ) -> DiscoveryBridge:
        source = EtcdSource(self.etcd.url, self.prefix, timeout=2.0)
        return DiscoveryBridge(
            source,
            self.repository,
            mode=mode,
            refresh_interval=refresh_interval,
            backoff_initial=0.05,
            backoff_max=0.3,
            metrics=metrics if metrics is not None else BridgeMetrics(),
            claim_hold_seconds=claim_hold_seconds,
        )

    async def start(self, bridge: DiscoveryBridge) -> DiscoveryBridge:
        """Run ``bridge`` and wait (bounded) until it follows the source."""
        bridge.synced.clear()
        task = asyncio.create_task(bridge.run())
        self._tasks[bridge] = task
        synced = asyncio.create_task(bridge.synced.wait())
        await asyncio.wait([task, synced], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            synced.cancel()
            task.result()  # raises what ended it
        if not synced.done():
            synced.cancel()
            raise AssertionError(f"bridge not synced within {WAIT} s")
        return bridge

    async def run(self, **options: Any) -> DiscoveryBridge:
        """A new bridge, started."""
        return await self.start(self.make(**options))

    async def stop(self, bridge: DiscoveryBridge) -> None:
        task = self._tasks.pop(bridge)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)

    async def aclose(self) -> None:
        for bridge in list(self._tasks):
            await self.stop(bridge)
