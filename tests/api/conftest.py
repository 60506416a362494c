"""A real ``toolreg serve`` process on loopback, on a database of its own, per test module."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

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
    log: IO[str]  # the server's stdout and stderr: a file, so a chatty server never blocks

    def output(self) -> str:
        """Everything the server has printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

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
    # A file, not a pipe: nobody reads a pipe while the test runs, and a server
    # that logs more than the pipe holds would block on its next log line.
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by stop_server
    process = subprocess.Popen(
        [TOOLREG, "serve", "--port", str(port), "--log-level", "warning", *extra],
        env=clean_env(DATABASE_URL=dsn, **(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", dsn, process, log)
    try:
        wait_until_healthy(process, server.base_url, server.output)
    except BaseException:
        log.close()
        raise
    return server


@contextmanager
def running_server(dsn: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """A registry server for the body of the ``with`` (for module-scoped fixtures)."""
    running = start_server(dsn, *extra, env=env)
    try:
        yield running
    finally:
        stop_server(running)


def stop_server(server: Server) -> int:
    code = terminate(server.process)
    server.log.close()
    return code


@contextmanager
def database_at_head(server_dsn: str, template_db: str) -> Iterator[str]:
    """A new database at head (a copy of the template), dropped at the end."""
    name = f"toolreg_m_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def module_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database at head for one test module."""
    with database_at_head(server_dsn, template_db) as dsn:
        yield dsn


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
