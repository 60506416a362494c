"""The database restarted during routing: the index serves what it knows, says so, recovers.

Past the grace period calls fail with IndexUnavailableError (a RuntimeError
and a RegistryUnavailableError) until the database is back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.errors import RegistryUnavailableError
from omninode_bridge.migrations import runner
from omninode_bridge.services import (
    PostgresClient,
    ToolDiscoveryService,
    ToolRegistrationRepository,
)
from omninode_bridge.services.discovery import IndexUnavailableError
from tests.services.discovery.helpers import (
    FAST,
    MetricsWatcher,
    discovery_settings,
    register,
    until,
)
from tests.services.discovery.tool_server import ToolServer

pytestmark = pytest.mark.embedded


class Outcomes:
    """What the routing loop got, call by call; awaitable by count."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._added = asyncio.Event()

    def add(self, outcome: str) -> None:
        self.items.append(outcome)
        self._added.set()

    async def at_least(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._added.clear()
                await self._added.wait()


async def test_database_restarted_during_routing(temp_data_dir: Path) -> None:
    server = await start_embedded(temp_data_dir)
    dsn = server.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    settings = discovery_settings(pool_max_size=4, connect_timeout=3)
    async with (
        PostgresClient(settings, dsn=dsn) as client,
        ToolServer("a") as tool_a,
        ToolServer("b") as tool_b,
    ):
        repository = ToolRegistrationRepository(client)
        await register(repository, "a", tool_a.url())
        await register(repository, "b", tool_b.url())
        watcher = MetricsWatcher()
        async with ToolDiscoveryService(
            repository, settings, tuning=FAST, metrics=watcher.metrics
        ) as service:
            outcomes = Outcomes()
            stop = asyncio.Event()

            async def route_continuously() -> None:
                while not stop.is_set():
                    try:
                        outcomes.add((await service.route_request("stamp", {}))["tool"])
                    except Exception as exc:  # counted, and the test fails on any
                        outcomes.add(f"error: {exc!r}")
                    await asyncio.sleep(0.005)  # pacing

            router = asyncio.create_task(route_continuously())
            try:
                await outcomes.at_least(20, 5)
                await stop_embedded(temp_data_dir)
                await watcher.reach(lambda m: m.index_degraded == 1, 5)
                await outcomes.at_least(len(outcomes.items) + 20, 5)
                assert service.status()["stale_seconds"] > 0

                await start_embedded(temp_data_dir)
                await register(repository, "c", tool_a.url(), ("hash",))

                async def c_routable() -> bool:
                    return await service.discover_tool("hash") is not None

                await until(service, c_routable, 5.0)
                await watcher.reach(lambda m: m.index_degraded == 0, 5)
            finally:
                stop.set()
                await router
            assert [o for o in outcomes.items if o.startswith("error")] == []
            assert set(outcomes.items) == {"a", "b"}
            assert service.metrics.feed_reconnects >= 1
            assert service.metrics.sync_failures >= 1
            assert service.metrics.index_unavailable == 0


async def test_past_the_grace_calls_fail_clearly_then_recover(temp_data_dir: Path) -> None:
    server = await start_embedded(temp_data_dir)
    dsn = server.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    settings = discovery_settings(pool_max_size=4, connect_timeout=3, stale_index_grace_seconds=1)
    async with PostgresClient(settings, dsn=dsn) as client, ToolServer("a") as tool:
        repository = ToolRegistrationRepository(client)
        await register(repository, "a", tool.url())
        watcher = MetricsWatcher()
        async with ToolDiscoveryService(
            repository, settings, tuning=FAST, metrics=watcher.metrics
        ) as service:
            assert (await service.route_request("stamp", {}))["tool"] == "a"
            calls: list[tuple[float, BaseException | None]] = []
            loop = asyncio.get_running_loop()

            async def route_until_refused() -> None:
                while True:
                    try:
                        await service.route_request("stamp", {})
                    except IndexUnavailableError as exc:
                        calls.append((loop.time(), exc))
                        return
                    calls.append((loop.time(), None))
                    await asyncio.sleep(0.01)  # pacing

            router = asyncio.create_task(route_until_refused())
            try:
                await stop_embedded(temp_data_dir)
                async with asyncio.timeout(8):
                    await router
            finally:
                router.cancel()
            stale_since = watcher.metrics.index_stale_since
            assert stale_since is not None
            refused_at, error = calls[-1]
            assert all(exc is None for _, exc in calls[:-1])
            # Served from the last known state through the grace, refused after it.
            assert any(t > stale_since + 0.5 for t, _ in calls[:-1])
            assert 1.0 <= refused_at - stale_since < 2.0
            assert isinstance(error, RuntimeError)
            assert isinstance(error, RegistryUnavailableError)
            assert "grace" in str(error)
            assert isinstance(error.__cause__, RegistryUnavailableError | TimeoutError)
            assert service.metrics.index_unavailable == 1
            with pytest.raises(IndexUnavailableError):
                await service.discover_tool("stamp")

            # A service whose first use finds no database fails the same way.
            fresh = ToolDiscoveryService(repository, settings, tuning=FAST)
            with pytest.raises(IndexUnavailableError, match="cannot load") as info:
                await fresh.discover_tool("stamp")
            assert isinstance(info.value.__cause__, RegistryUnavailableError)

            await start_embedded(temp_data_dir)
            await watcher.reach(lambda m: m.index_unavailable == 0, 5)
            assert (await service.route_request("stamp", {}))["tool"] == "a"
            assert (await fresh.discover_tool("stamp")) is not None
            await fresh.aclose()
