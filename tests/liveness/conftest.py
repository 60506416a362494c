"""Fixtures of the liveness tests: a scripted health server, settings, checkers, tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from omninode_bridge.liveness import HealthChecker, LivenessMetrics, Reaper, make_check_client
from omninode_bridge.services import PostgresClient
from tests.liveness.health_server import HealthServer
from tests.liveness.helpers import liveness_settings


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
