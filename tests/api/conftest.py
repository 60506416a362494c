"""A real ``toolreg serve`` process on loopback, on a database of its own, per test module."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import Scope, TokenService
from omninode_bridge.settings import Settings
from tests.conftest import _admin
from tests.support import TOOLREG, clean_env, with_database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}: {out}")
        try:
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                return Server(base_url, dsn, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not answer /health within 60 s")


def stop_server(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    if server.process.stdout:
        server.process.stdout.close()
    return int(server.process.returncode)


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
