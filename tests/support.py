"""Helpers shared by the tests (no fixtures here; see conftest.py).

One copy of each mechanism: the base test :func:`base_settings`, the registration
builders (:func:`registration` for the repository, :func:`tool_body` and
:func:`operation_body` for the REST API), temporary databases
(:func:`temporary_database`, :func:`temporary_database_blocking`, :func:`admin`), a
connection of a test's own (:func:`connection`),
the ``toolreg serve`` launcher (:class:`Server`, :func:`start_server`,
:func:`running_server`, :func:`stop_server`), and one sample read from a
``/metrics`` text (:func:`metric_value`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient
from omninode_bridge.services.tokens import Scope, TokenService
from omninode_bridge.settings import Settings, dsn_hosts

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLREG = str(Path(sys.executable).with_name("toolreg"))


def metric_value(exposition: str, sample: str) -> float | None:
    """The value of the unlabelled ``sample`` in a ``/metrics`` text (``None``: absent)."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else None


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def base_settings(
    *,
    pool_min_size: int = 1,
    pool_max_size: int = 10,
    connect_timeout: float = 5,
    command_timeout: float = 30,
    **overrides: Any,
) -> Settings:
    """The tests' settings: a small pool and short database timeouts, whatever the
    caller's ``TOOLREG_POOL_*`` and timeouts; any other setting in ``overrides``."""
    return Settings(
        pool_min_size=pool_min_size,
        pool_max_size=pool_max_size,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        **overrides,
    )


def registration(tool_id: str, **overrides: Any) -> ModelToolRegistrationCreate:
    """A compute tool offering ``analyze`` at ``http://<tool_id>:8080/analyze``."""
    data: dict[str, Any] = {
        "tool_id": tool_id,
        "node_type": "compute",
        "capabilities": {"operations": ["analyze"]},
        "endpoints": {"analyze": f"http://{tool_id}:8080/analyze"},
    }
    data.update(overrides)
    return ModelToolRegistrationCreate(**data)


def tool_body(tool_id: str, **extra: Any) -> dict[str, Any]:
    """A REST registration body: the guide's metadata stamper, with every field set."""
    data: dict[str, Any] = {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": ["stamp", "hash"], "max_file_size": 10485760},
        "endpoints": {"stamp": "http://metadata-service:8053/api/v1/stamp"},
        "metadata": {"version": "1.0.0"},
        "health_endpoint": "http://metadata-service:8053/health",
    }
    data.update(extra)
    return data


def operation_body(tool_id: str, operation: str, url: str) -> dict[str, Any]:
    """A minimal REST registration body: an effect offering ``operation`` at ``url``."""
    return {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": [operation]},
        "endpoints": {operation: url},
    }


PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check ``response`` is an RFC 9457 problem with ``status``; the problem's fields."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"].startswith("https://")
    return problem


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any registry settings of the caller, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOOLREG_", "POSTGRES_")) and k != "DATABASE_URL"
    }
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``toolreg`` as a real subprocess."""
    return subprocess.run(
        [TOOLREG, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    process: subprocess.Popen[Any], base_url: str, output: Callable[[], str], limit: float = 60
) -> None:
    """Return once ``base_url``/health answers 200; AssertionError (with ``output()``) if the
    process exits first or ``limit`` seconds pass (then the process is killed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {output()}")
        try:
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"server did not answer /health within {limit:g} s")


def terminate(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, up to 30 s for a clean exit, then SIGKILL; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return int(process.returncode)


class SwitchableProxy:
    """A TCP port on loopback forwarding to the server of ``dsn``, or refusing connections.

    ``dsn`` is the DSN through the proxy. ``down()`` is a lost primary: new connections
    are refused and open ones cut; ``up()`` brings it back.
    """

    def __init__(self, dsn: str) -> None:
        ((self.host, port),) = dsn_hosts(dsn)
        self.target_port = port or 5432
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        query = "&".join(
            p for p in parts.query.split("&") if p and not p.startswith(("host=", "port="))
        )
        self.dsn = urlunsplit(
            parts._replace(netloc=f"{userinfo}@127.0.0.1:{self.port}", query=query)
        )

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        """Refuse new connections and cut the open ones (the primary is gone)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for pipe in self.pipes:
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.host.startswith("/"):
            path = f"{self.host}/.s.PGSQL.{self.target_port}"
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@asynccontextmanager
async def connection(dsn: str, *, timeout: float = 60) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to ``dsn`` (not a pool's: what another session sees, or an
    administrator's), opened within ``timeout`` seconds and closed at the end."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        yield conn
    finally:
        await conn.close()


async def admin(server_dsn: str, sql: str) -> None:
    """Run one statement (``CREATE DATABASE`` and the like) on its own connection."""
    async with connection(server_dsn, timeout=30) as conn:
        await conn.execute(sql)


def _create_database(name: str, template: str | None) -> str:
    return f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")


def _drop_database(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


def _database_name(prefix: str, name: str | None) -> str:
    return name or f"{prefix}{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def temporary_database(
    server_dsn: str, *, template: str | None = None, prefix: str = "toolreg_t_"
) -> AsyncIterator[str]:
    """The DSN of a new database on ``server_dsn``'s server (a copy of ``template``, else
    empty), named ``prefix`` plus a random suffix, dropped at the end."""
    name = _database_name(prefix, None)
    await admin(server_dsn, _create_database(name, template))
    try:
        yield with_database(server_dsn, name)
    finally:
        await admin(server_dsn, _drop_database(name))


@contextmanager
def temporary_database_blocking(
    server_dsn: str,
    *,
    template: str | None = None,
    prefix: str = "toolreg_m_",
    name: str | None = None,
) -> Iterator[str]:
    """:func:`temporary_database` outside an event loop (module and session fixtures);
    ``name`` replaces the random one."""
    name = _database_name(prefix, name)
    asyncio.run(admin(server_dsn, _create_database(name, template)))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(admin(server_dsn, _drop_database(name)))


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
        async with PostgresClient(base_settings(pool_max_size=1), dsn=self.dsn) as client:
            created = await TokenService(client).create(name or f"t-{uuid.uuid4().hex[:8]}", scope)
        return created.secret


def start_server(
    dsn: str,
    *extra: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_level: str = "warning",
    log_path: Path | None = None,
) -> Server:
    """``toolreg serve`` on ``dsn`` (and a free port unless ``port``); returns once /health
    answers (60 s). Its output goes to ``log_path`` if given, else to a temporary file."""
    port = port or free_port()
    # A file, not a pipe: nobody reads a pipe while the test runs, and a server
    # that logs more than the pipe holds would block on its next log line.
    log = (  # closed by stop_server
        log_path.open("w+", encoding="utf-8")
        if log_path is not None
        else tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
    )
    try:
        process = subprocess.Popen(
            [TOOLREG, "serve", "--port", str(port), "--log-level", log_level, *extra],
            env=clean_env(DATABASE_URL=dsn, **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = Server(f"http://127.0.0.1:{port}", dsn, process, log)
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
    """:func:`terminate` the server and close its log; the exit code."""
    code = terminate(server.process)
    server.log.close()
    return code


# -- what the liveness leader logs (at debug level), as the replica and HA tests read it -------

PASS_BEGINS = re.compile(r"liveness pass begins kind=(\w+) pid=(\d+) start=(\S+)")
PASS_ENDED = re.compile(r"liveness pass kind=(\w+) pid=(\d+) start=(\S+) end=(\S+)")
LEADER_ELECTED = re.compile(r"liveness leader elected: lease generation (\d+), .*\bt=(\S+)")
LEADER_STEPPED_DOWN = re.compile(r"liveness leader stepped down: lease generation (\d+), t=(\S+)")


def log_time(text: str) -> float:
    """A log line's ISO 8601 time (``start=``, ``t=``) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


# -- headless Chromium (Debian's chromium + chromium-driver), for the console's tests and
# its benchmark -----------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def headless_chromium(*extra_args: str, **capabilities: Any) -> Any:
    """A Selenium Chrome driver on headless Chromium (no sandbox: these run as root), with
    ``extra_args`` and ``capabilities`` added. Selenium is imported only here."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,800",
        *extra_args,
    ):
        options.add_argument(arg)
    for name, value in capabilities.items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
