"""A real ``toolreg serve`` process on loopback, on a database of its own, per test module."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import Scope, TokenService
from omninode_bridge.settings import Settings
from tests.conftest import _admin
from tests.support import (
    TOOLREG,
    clean_env,
    free_port,
    terminate,
    wait_until_healthy,
    with_database,
)


@dataclass
class Server:
    """A running registry server and what tests need to talk to it."""

    base_url: str
    dsn: str
    process: subprocess.Popen[str]

    async def token(self, scope: Scope | str, name: str | None = None) -> str:
        """A new token's secret, created straight in the database."""
        async with PostgresClient(
            Settings(pool_min_size=1, pool_max_size=1), dsn=self.dsn
        ) as client:
            created = await TokenService(client).create(name or f"t-{uuid.uuid4().hex[:8]}", scope)
        return created.secret


def start_server(
    dsn: str, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    port = port or free_port()
    process = subprocess.Popen(
        [TOOLREG, "serve", "--port", str(port), "--log-level", "warning", *extra],
        env=clean_env(DATABASE_URL=dsn, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_healthy(process, base_url, lambda: process.stdout.read() if process.stdout else "")
    return Server(base_url, dsn, process)


def stop_server(server: Server) -> int:
    code = terminate(server.process)
    if server.process.stdout:
        server.process.stdout.close()
    return code


@pytest.fixture(scope="module")
def module_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database at head for one test module."""
    name = f"toolreg_m_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[Server]:
    """One registry server process for the module."""
    running = start_server(module_db)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def uid() -> str:
    """A short unique suffix for tool ids in a shared module database."""
    return uuid.uuid4().hex[:10]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
