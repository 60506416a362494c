"""One Patroni cluster (deploy/ha/up) for the ha tests, and two registry replicas per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import TokenService
from omninode_bridge.settings import Settings
from tests.ha.cluster import HaCluster, missing_requirements
from tests.ha.scenario import REPLICA_ENV
from tests.liveness.servers import ServerProcess, spawn, stop


@pytest.fixture(scope="session")
def cluster() -> Iterator[HaCluster]:
    """etcd and two Patroni-managed PostgreSQL 15 nodes, the registry's database migrated."""
    reason = missing_requirements()
    if reason is not None:
        if os.environ.get("HA_TESTS_REQUIRED"):  # CI: a missing package fails, never skips
            pytest.fail(reason)
        pytest.skip(reason)
    running = HaCluster()
    try:
        running.up()
        yield running
    finally:
        running.down()


@pytest.fixture
async def healthy(cluster: HaCluster) -> HaCluster:
    """The cluster with every node back, one primary and a synchronous standby."""
    for node in cluster.nodes:
        if node.patroni_pid() is None:
            await cluster.start_node(node)
    await cluster.wait_healthy()
    return cluster


@pytest.fixture
def replicas(healthy: HaCluster, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two ``toolreg serve`` replicas on the cluster's multi-host URL, logging at debug level."""
    servers: list[ServerProcess] = []
    try:
        for i in range(2):
            servers.append(spawn(healthy.dsn, tmp_path / f"replica-{i}.log", REPLICA_ENV))
        yield servers
    finally:
        for server in servers:
            stop(server)


@pytest.fixture
async def token(healthy: HaCluster) -> str:
    """A write token's secret, created in the cluster's database."""
    settings = Settings(pool_min_size=1, pool_max_size=1)
    async with PostgresClient(settings, dsn=healthy.dsn) as client:
        created = await TokenService(client).create(f"ha-{uuid.uuid4().hex[:10]}", "write")
    return created.secret
