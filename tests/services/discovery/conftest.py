"""Fixtures of the discovery tests: a service on the test's database, real HTTP tools."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from tests.services.discovery.helpers import (
    FAST,
    ToolFactory,
    discovery_settings,
)
from tests.services.discovery.tool_server import Reply, ToolServer


@pytest.fixture
async def service(repository: ToolRegistrationRepository) -> AsyncIterator[ToolDiscoveryService]:
    """A started service on this test's database, closed after the test."""
    async with ToolDiscoveryService(repository, discovery_settings(), tuning=FAST) as svc:
        yield svc


@pytest.fixture
async def http_tool() -> AsyncIterator[ToolFactory]:
    """Start real HTTP tools on loopback: ``await http_tool("name", Reply(...))``."""
    started: list[ToolServer] = []

    async def make(name: str, reply: Reply | None = None) -> ToolServer:
        server = await ToolServer(name, reply or Reply()).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()
