"""Fixtures: one PostgreSQL per test session, a migrated template, a fresh database per test
(or per module), and a registry server per module.

With ``DATABASE_URL`` set (CI's Debian PostgreSQL 15 run) the tests use that
server; otherwise they start the embedded PostgreSQL in a temporary data dir.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.migrations import runner
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings
from tests.support import (
    Server,
    base_settings,
    running_server,
    temporary_database,
    temporary_database_blocking,
    with_database,
)


def _make_temp_data_dir(prefix: str) -> Path:
    # Under /tmp: the embedded wheel (as root) widens every parent of its data
    # dir, and /tmp needs no widening. pytest's own tmp dirs live under a 0700
    # folder that would be opened up.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A DSN to the test server's maintenance database ``postgres``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield with_database(url, "postgres")
        return
    data_dir = _make_temp_data_dir("toolreg-test-")
    server = asyncio.run(start_embedded(data_dir, "postgres"))
    try:
        yield server.dsn("postgres")
    finally:
        asyncio.run(stop_embedded(data_dir))
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """Name of a database migrated to head once per session, cloned by every test."""
    name = f"toolreg_tpl_{uuid.uuid4().hex[:10]}"
    with temporary_database_blocking(server_dsn, name=name) as dsn:
        asyncio.run(runner.upgrade(dsn))
        yield name


@pytest.fixture
async def db_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database at head, cloned from the template, dropped after the test."""
    async with temporary_database(server_dsn, template=template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def module_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database at head for one test module (tests in it share it: see :func:`uid`)."""
    with temporary_database_blocking(server_dsn, template=template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[Server]:
    """One registry server process for the module, on its database, default settings."""
    with running_server(module_db) as running:
        yield running


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def uid() -> str:
    """A short unique suffix for tool ids in a shared module database."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def empty_db_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    async with temporary_database(server_dsn, prefix="toolreg_e_") as dsn:
        yield dsn


@pytest.fixture
def test_settings() -> Settings:
    """Settings independent of the caller's environment, with a small pool."""
    return base_settings()


@pytest.fixture
async def postgres_client(db_dsn: str, test_settings: Settings) -> AsyncIterator[PostgresClient]:
    """A connected client on this test's database."""
    async with PostgresClient(test_settings, dsn=db_dsn) as client:
        yield client


@pytest.fixture
def temp_data_dir() -> Iterator[Path]:
    """An empty data dir for an embedded server of the test's own; stopped and removed after."""
    data_dir = _make_temp_data_dir("toolreg-emb-")
    try:
        yield data_dir
    finally:
        asyncio.run(stop_embedded(data_dir))
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def repository(postgres_client: PostgresClient) -> ToolRegistrationRepository:
    """The guide's repository on this test's database."""
    return ToolRegistrationRepository(postgres_client)
