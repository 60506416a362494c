"""Fixtures: a real etcd per test, an etcd client, and bridges on this test's database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aetcd
import pytest

from omninode_bridge.services import ToolRegistrationRepository
from tests.autodiscovery.etcd_server import ETCD_BINARY, EtcdServer
from tests.autodiscovery.helpers import Bridges


@pytest.fixture(scope="session")
def etcd_binary() -> str:
    """Debian's etcd; a clear failure (not a skip) where it is missing."""
    if not Path(ETCD_BINARY).exists():  # .ci/run installs it
        pytest.fail(f"{ETCD_BINARY} is missing: apt-get install etcd-server etcd-client")
    return ETCD_BINARY


@pytest.fixture
async def etcd(etcd_binary: str) -> AsyncIterator[EtcdServer]:
    """A fresh etcd on free loopback ports with a temporary data dir; removed after."""
    server = EtcdServer()
    try:
        await server.start()
        yield server
    finally:
        await server.close()


@pytest.fixture
async def etcd_client(etcd: EtcdServer) -> AsyncIterator[aetcd.Client]:
    """A client of the test's etcd, for the test's own puts, leases and deletes."""
    async with aetcd.Client(host="127.0.0.1", port=etcd.client_port, timeout=5) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own."""
    return f"/omninode/t{uuid.uuid4().hex[:8]}/"


@pytest.fixture
async def bridges(
    etcd: EtcdServer, repository: ToolRegistrationRepository, prefix: str
) -> AsyncIterator[Bridges]:
    """Builds, starts and stops bridges on the test's etcd and database."""
    runner = Bridges(etcd, repository, prefix)
    try:
        yield runner
    finally:
        await runner.aclose()
