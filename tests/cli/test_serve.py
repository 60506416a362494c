"""``toolreg serve`` as a real process: where it binds, what its start line says, and a
port already taken."""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from omninode_bridge.services.postgres_client import describe_dsn
from tests.support import TOOLREG, clean_env, run_cli, terminate

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (DEBUG|INFO|WARNING|ERROR) ")
START_LINE = re.compile(r"omninode_bridge\.serve: serving (\S+); registry on (.+)$", re.M)


def _read(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()


@contextmanager
def _serving(dsn: str, *args: str) -> Iterator[tuple[str, str, IO[str]]]:
    """A ``toolreg serve`` on whatever address ``args`` give it: (where it says it serves,
    the database it names, its log), once its start line is out. Stopped after."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [TOOLREG, "serve", "--log-level", "info", *args],
            env=clean_env(DATABASE_URL=dsn),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while (found := START_LINE.search(_read(log))) is None:
                assert process.poll() is None, f"server exited: {_read(log)}"
                assert time.monotonic() < deadline, f"no start line in 60 s: {_read(log)}"
                time.sleep(0.05)
            yield found.group(1), found.group(2), log
        finally:
            terminate(process)


def test_port_0_start_line_names_the_port_bound_and_the_database(db_dsn: str) -> None:
    with _serving(db_dsn, "--port", "0") as (where, database, log):
        port = int(where.removeprefix("http://127.0.0.1:"))  # the port the kernel chose
        assert port > 0
        assert httpx.get(f"{where}/health", timeout=10).status_code == 200
        assert database == describe_dsn(db_dsn)
        if "?host=/" in db_dsn:  # the embedded server: its socket, not a made-up :5432
            assert re.fullmatch(r"/\S+/\.s\.PGSQL\.\d+ \(database \w+\)", database)
        output = _read(log)
    records = [  # not a traceback's lines: they belong to the record above them
        line
        for line in output.splitlines()
        if line and not line[0].isspace() and not line.startswith("Traceback")
    ]
    assert len(records) >= 4
    for line in records:
        if "uvicorn" in line or "omninode_bridge." in line:
            assert ISO_LINE.match(line), line
    assert output.index("Application startup complete") < output.index(" serving http://")


def test_unix_socket_serves_and_is_named(db_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "toolreg.sock"
    with _serving(db_dsn, "--uds", str(path)) as (where, _, _log):
        assert where == f"unix:{path}"
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://registry") as client:
            assert client.get("/health", timeout=10).status_code == 200
    assert not path.exists()  # removed when the server stops


def test_a_taken_port_fails_before_anything_starts(db_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_cli(
            "serve", "--port", str(port), "--log-level", "info", env=clean_env(DATABASE_URL=db_dsn)
        )
    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: another process listens there" in (
        result.stderr
    )
    assert "--port" in result.stderr
    output = result.stdout + result.stderr
    assert "startup complete" not in output  # nor did the app or the database start
    assert "Started server process" not in output
    assert "Running upgrade" not in output
    assert time.monotonic() - started < 30


def test_an_unknown_log_format_is_refused(db_dsn: str) -> None:
    env = clean_env(DATABASE_URL=db_dsn, TOOLREG_LOG_FORMAT="xml")
    result = run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 1
    assert "TOOLREG_LOG_FORMAT: Input should be 'text' or 'json'" in result.stderr
