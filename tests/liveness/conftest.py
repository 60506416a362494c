"""Fixtures of the liveness tests: a scripted health server, settings, checkers, tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from omninode_bridge.liveness import HealthChecker, LivenessMetrics, Reaper, make_check_client
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings
from tests.liveness.health_server import HealthServer


def liveness_settings(**overrides: Any) -> Settings:
    """Test settings: small pool, short check timeout, the issue's default thresholds."""
    values: dict[str, Any] = {
        "pool_min_size": 1,
        "pool_max_size": 10,
        "connect_timeout": 5,
        "command_timeout": 30,
        "check_timeout_seconds": 1.0,
        "check_concurrency": 50,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def health_server() -> AsyncIterator[HealthServer]:
    async with HealthServer() as server:
        yield server


@pytest.fixture
def metrics() -> LivenessMetrics:
    return LivenessMetrics(CollectorRegistry())


@pytest.fixture
async def make_checker(
    postgres_client: PostgresClient, metrics: LivenessMetrics
) -> AsyncIterator[Callable[..., HealthChecker]]:
    """Builds checkers on this test's database (``**settings`` overrides); closes their clients."""
    clients = []

    def build(**overrides: Any) -> HealthChecker:
        settings = liveness_settings(**overrides)
        http = make_check_client(settings)
        clients.append(http)
        return HealthChecker(postgres_client, settings, http, metrics)

    try:
        yield build
    finally:
        for http in clients:
            await http.aclose()


@pytest.fixture
def make_reaper(postgres_client: PostgresClient, metrics: LivenessMetrics) -> Callable[..., Reaper]:
    def build(**overrides: Any) -> Reaper:
        return Reaper(postgres_client, liveness_settings(**overrides), metrics)

    return build


async def register(
    repository: ToolRegistrationRepository,
    tool_id: str,
    *,
    operations: Sequence[str] = ("stamp",),
    health: str | None = None,
    heartbeat_age: float | None = None,
) -> None:
    """Register ``tool_id`` offering ``operations`` with endpoints; maybe age its heartbeat."""
    await repository.create_registration(
        ModelToolRegistrationCreate(
            tool_id=tool_id,
            node_type="effect",
            capabilities={"operations": list(operations)},
            endpoints={op: f"http://127.0.0.1:9/{op}" for op in operations},
            health_endpoint=health,
        )
    )
    if heartbeat_age is not None:
        when = datetime.now(UTC) - timedelta(seconds=heartbeat_age)
        assert await repository.update_heartbeat(tool_id, when)


async def event_kinds(repository: ToolRegistrationRepository, tool_id: str) -> list[str]:
    """The kinds of ``tool_id``'s change-feed events, in feed order."""
    return [e.kind.value for e in await repository.changes(None, 10_000) if e.tool_id == tool_id]
