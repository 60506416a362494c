"""Helpers shared by the tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from omninode_bridge.settings import dsn_hosts

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLREG = str(Path(sys.executable).with_name("toolreg"))


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


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
