"""A real ``toolreg serve`` process on loopback, on a database of its own, per test module."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support import Server, running_server, temporary_database_blocking


@pytest.fixture(scope="module")
def module_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database at head for one test module."""
    with temporary_database_blocking(server_dsn, template=template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[Server]:
    """One registry server process for the module."""
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
