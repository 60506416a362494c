"""What the benchmarks share: databases, seeded tools, ``toolreg serve`` processes, figures.

One copy of each mechanism the benchmarks under ``benchmarks/`` use:

* databases: :class:`Database` (one throwaway database on ``DATABASE_URL``'s
  server, or a fresh embedded PostgreSQL under /tmp) and :class:`Server`
  (a server many databases are created on, from templates too);
* seeding: :func:`tool_payload` (the repository benchmarks' realistic tools,
  ``read`` on about half, ``transcode`` on about 1%) and
  :func:`api_tool_payload` with :func:`prepare` (the HTTP benchmarks' tools,
  three of eight operations, ``stamp`` among them, and a write token);
* clients: :class:`LeanHttp` (one kept-alive HTTP/1.1 connection with next to
  no client-side cost, to measure what a server adds);
* server processes: :func:`start_process`, :func:`wait_ready` (``/health``),
  :func:`serve` (both, for ``toolreg serve``), :func:`stop_process`, and
  :func:`served` (a prepared :class:`Database` with ``toolreg serve`` on it);
* figures: :func:`pct`, :func:`rss_mib`, CPU time of processes and of
  PostgreSQL (:func:`cpu_times`, :func:`postgres_pids`), :func:`machine_load`;
* running: :func:`run_in_work_dir` (a /tmp work dir, SIGTERM unwinding through
  the cleanup: :func:`exit_on_sigterm`), :func:`raise_open_files`.

``with_database``, ``clean_env``, ``free_port``, ``TOOLREG`` and ``REPO_ROOT``
are the tests' (``tests/support.py``), re-exported here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
from tests.support import REPO_ROOT, TOOLREG, clean_env, free_port, with_database

from omninode_bridge.models import NodeType

__all__ = [
    "COMMON",
    "HOST",
    "ID_PREFIX",
    "NODE_TYPES",
    "OTHER_OPERATIONS",
    "QUIET_CHECKS",
    "RARE",
    "REPO_ROOT",
    "SEED_BATCH",
    "TOOLREG",
    "Database",
    "LeanHttp",
    "Proc",
    "Server",
    "api_tool_payload",
    "check_alive",
    "clean_env",
    "cpu_spent",
    "cpu_times",
    "end_process",
    "exit_on_sigterm",
    "find_postmaster",
    "free_port",
    "machine_load",
    "pct",
    "postgres_pids",
    "prepare",
    "print_logs",
    "raise_open_files",
    "request",
    "rss_mib",
    "run_in_work_dir",
    "serve",
    "served",
    "start_process",
    "stop_process",
    "tool_base",
    "tool_id",
    "tool_payload",
    "wait_ready",
    "with_database",
]

HOST = "127.0.0.1"
ID_PREFIX = "bench-tool-"
SEED_BATCH = 1000
T = TypeVar("T")
FD_MARGIN = 256  # files besides the clients' sockets: the server's pool, logs, libraries

# -- clients ---------------------------------------------------------------------


class LeanHttp:
    """One kept-alive HTTP/1.1 connection that costs its caller almost nothing.

    A measuring instrument, not a client for production: it writes the request
    in one piece and reads a ``Content-Length`` answer (a chunked one is an
    error). httpx costs about 0.7 ms of client CPU per request on these
    machines, as much as the server work some benchmarks measure; through
    this connection a ``GET /health`` of the server takes about 0.35 ms.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or HOST, parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __aenter__(self) -> LeanHttp:
        self._streams = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._streams is not None:
            self._streams[1].close()
            with contextlib.suppress(OSError):
                await self._streams[1].wait_closed()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Status and body of one request on the kept-alive connection."""
        if self._streams is None:
            raise RuntimeError("LeanHttp is used as an async context manager")
        reader, writer = self._streams
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed}{extra}"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        length = 0
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                raise RuntimeError(f"{method} {path}: {value.strip()} (LeanHttp reads none)")
        return status, await reader.readexactly(length)


# -- running ---------------------------------------------------------------------


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the caller's cleanup


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit``, so that ``finally`` blocks stop servers and databases."""
    signal.signal(signal.SIGTERM, _terminate)


def run_in_work_dir(
    prefix: str, benchmark: Callable[[argparse.Namespace, Path], T], args: argparse.Namespace
) -> T:
    """``benchmark(args, work)``: ``work`` a new directory under /tmp (removed after), and
    SIGTERM unwinding through the benchmark's cleanup (:func:`exit_on_sigterm`)."""
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp:
        return benchmark(args, Path(tmp))


def raise_open_files(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; the new soft limit.

    Raises SystemExit when even the hard limit leaves too few files for ``needed`` sockets.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed + FD_MARGIN:
        raise SystemExit(f"open-file hard limit {hard} is too low for {needed} clients")
    return hard


# -- figures ---------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``values`` (any order; at least one)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from /proc (nan when unreadable)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_load(when: str) -> str:
    """The load average against the CPU count: other work on the machine skews every number."""
    cpus, load = os.cpu_count() or 1, os.getloadavg()[0]
    line = f"  {when}: {cpus} CPUs, 1-minute load average {load:.1f}"
    if load > cpus * 0.75:
        line += " (busy machine: compare ratios and CPU per request, not absolute req/s)"
    return line


def cpu_times(pids: list[int]) -> dict[int, float]:
    """utime + stime in seconds of each of these processes that is still there."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    return times


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots: processes that appeared count whole."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


async def find_postmaster(dsn: str) -> int | None:
    """The local PostgreSQL server's main process, or ``None`` when it is not visible here."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        return int(_stat(backend)[1])  # while the backend still exists
    except (OSError, IndexError, ValueError):
        return None
    finally:
        await conn.close()


def postgres_pids(postmaster: int | None) -> list[int]:
    """The server's main process and its children (backends, background workers)."""
    if postmaster is None:
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if _stat(int(entry.name))[1] == str(postmaster):
                    pids.append(int(entry.name))
    return pids


# -- databases -------------------------------------------------------------------


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in (None, "", "localhost", "127.0.0.1", "::1"):
        print(f"warning: DATABASE_URL host {host} is not loopback", file=sys.stderr)


class Database:
    """A throwaway database: on DATABASE_URL's server, or in a fresh embedded one.

    ``start``/``stop``, or ``async with`` (which also migrates it). ``prefix``
    names the database (``<prefix>_<8 hex>``) and the embedded data dir under /tmp.
    """

    def __init__(self, prefix: str = "toolreg_api_bench") -> None:
        self.url = os.environ.get("DATABASE_URL") or None
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.dir_prefix = prefix.replace("_", "-") + "-"
        self.data_dir: Path | None = None
        self.admin_dsn: str | None = None
        self.dsn = ""

    async def start(self) -> str:
        if self.url:
            _check_loopback(self.url)
            self.admin_dsn = with_database(self.url, "postgres")
            await self._admin(f'CREATE DATABASE "{self.name}"')
            self.dsn = with_database(self.url, self.name)
        else:
            from omninode_bridge.embedded import start_embedded

            self.data_dir = Path(tempfile.mkdtemp(prefix=self.dir_prefix, dir="/tmp"))
            self.data_dir.chmod(0o755)
            server = await start_embedded(self.data_dir, self.name)
            self.dsn = server.dsn(self.name)
        return self.dsn

    async def _admin(self, statement: str) -> None:
        assert self.admin_dsn is not None
        conn = await asyncpg.connect(self.admin_dsn, timeout=30)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def stop(self) -> None:
        if self.admin_dsn is not None and self.dsn:
            try:
                await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"warning: could not drop {self.name}: {exc}", file=sys.stderr)
        if self.data_dir is not None:
            from omninode_bridge.embedded import stop_embedded

            await stop_embedded(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def __aenter__(self) -> Database:
        from omninode_bridge.migrations import runner

        await self.start()
        try:
            await runner.upgrade(self.dsn)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Server:
    """The server a benchmark creates its databases on: DATABASE_URL's, or a fresh embedded one."""

    def __init__(self) -> None:
        self.url = os.environ.get("DATABASE_URL") or None
        self.data_dir: Path | None = None
        self.admin_dsn = ""
        self.created: list[str] = []

    async def start(self) -> None:
        if self.url:
            _check_loopback(self.url)
            self.admin_dsn = with_database(self.url, "postgres")
            return
        from omninode_bridge.embedded import start_embedded

        self.data_dir = Path(tempfile.mkdtemp(prefix="toolreg-bench-", dir="/tmp"))
        self.data_dir.chmod(0o755)
        server = await start_embedded(self.data_dir, "postgres")
        self.admin_dsn = server.dsn("postgres")

    async def admin(self, sql: str) -> Any:
        conn = await asyncpg.connect(self.admin_dsn, timeout=30)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def create(self, name: str, template: str | None = None) -> str:
        if template is None:
            await self.admin(f'CREATE DATABASE "{name}"')
        else:
            version = int(await self.admin("SHOW server_version_num"))
            strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
            await self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        self.created.append(name)
        return with_database(self.admin_dsn, name)

    async def drop(self, name: str) -> None:
        await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    async def stop(self) -> None:
        for name in list(self.created):
            try:
                await self.drop(name)
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"warning: could not drop {name}: {exc}", file=sys.stderr)
        if self.data_dir is not None:
            from omninode_bridge.embedded import stop_embedded

            await stop_embedded(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)


# -- seeded tools ----------------------------------------------------------------

RARE = ("operations", ["transcode"])  # about 1% of tool_payload's tools
COMMON = ("operations", ["read"])  # about 50% of them
OTHER_OPERATIONS = [
    "write",
    "list",
    "delete",
    "stat",
    "search",
    "validate",
    "convert",
    "compress",
    "hash",
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "render",
    "index",
    "summarize",
    "classify",
    "translate",
]
FORMATS = ["json", "yaml", "csv", "parquet", "xml", "pdf", "png", "txt", "md", "avro"]
TEAMS = ["platform", "data", "ml", "search", "media", "security", "infra", "billing"]
NODE_TYPES = [NodeType.EFFECT, NodeType.COMPUTE, NodeType.REDUCER, NodeType.ORCHESTRATOR]


# Active checks, off in the benchmarks' servers (a benchmark that measures them sets its
# own interval): each term's first checks spread over a day, so a run probes next to none.
QUIET_CHECKS = {"TOOLREG_CHECK_INTERVAL_SECONDS": "86400"}


def tool_base(tool_id: str) -> str:
    """The base URL of a seeded tool's endpoints: a loopback address literal with nothing
    listening (the discard port), a path per tool. Benchmarks send traffic to loopback only:
    made-up host names (``<id>.tools.svc.cluster.local``) sent every health check of the
    seeded tools to the network's DNS server; a literal resolves nowhere and a probe is
    refused at once."""
    return f"http://127.0.0.1:9/{tool_id}"


def tool_payload(rng: random.Random, tool_id: str) -> dict[str, Any]:
    """A realistic registration: 1-7 operations, formats, limits, endpoints, metadata."""
    operations = rng.sample(OTHER_OPERATIONS, rng.randint(1, 5))
    if rng.random() < 0.5:
        operations.insert(0, "read")
    if rng.random() < 0.01:
        operations.append("transcode")
    host = tool_base(tool_id)
    return {
        "tool_id": tool_id,
        "node_type": rng.choices(NODE_TYPES, weights=[4, 4, 1, 1])[0],
        "capabilities": {
            "operations": operations,
            "formats": rng.sample(FORMATS, rng.randint(1, 4)),
            "max_file_size": rng.choice([1_000_000, 5_000_000, 10_000_000, 50_000_000]),
            "streaming": rng.random() < 0.3,
            "version": f"{rng.randint(1, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        },
        "endpoints": {op: f"{host}/v1/{op}" for op in operations},
        "metadata": {
            "owner": rng.choice(TEAMS),
            "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
            "tags": rng.sample(["beta", "gpu", "batch", "realtime", "internal", "pii"], 2),
            "description": f"{operations[0]} tool #{tool_id[-6:]} maintained by the team",
        },
        "health_endpoint": f"{host}/health",
    }


def tool_id(i: int) -> str:
    """The id of :func:`api_tool_payload`'s tool ``i``."""
    return f"{ID_PREFIX}{i:07d}"


def api_tool_payload(rng: random.Random, i: int) -> dict[str, Any]:
    """The HTTP benchmarks' registration of about a kilobyte: 3 of 8 operations (``stamp`` too)."""
    ops = rng.sample(["read", "write", "list", "stamp", "hash", "sign", "convert", "index"], 3)
    host = tool_base(tool_id(i))
    return {
        "tool_id": tool_id(i),
        "node_type": rng.choice(["effect", "compute", "reducer", "orchestrator"]),
        "capabilities": {
            "operations": ops,
            "formats": rng.sample(["json", "yaml", "csv", "parquet", "xml", "pdf"], 2),
            "max_file_size": rng.choice([1_000_000, 10_000_000, 50_000_000]),
            "streaming": rng.random() < 0.3,
            "version": f"{rng.randint(1, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        },
        "endpoints": {op: f"{host}/v1/{op}" for op in ops},
        "metadata": {
            "owner": rng.choice(["platform", "data", "ml", "search", "media"]),
            "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
            "tags": rng.sample(["beta", "gpu", "batch", "realtime", "internal"], 2),
            "description": f"{ops[0]} tool #{i} maintained by the team",
        },
        "health_endpoint": f"{host}/health",
    }


async def prepare(dsn: str, tools: int) -> str:
    """Migrate, create a write token, seed ``tools`` registrations it owns; the secret."""
    from omninode_bridge.migrations import runner
    from omninode_bridge.models import ModelToolRegistrationCreate
    from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
    from omninode_bridge.services.tokens import Scope, TokenService
    from omninode_bridge.settings import Settings

    await runner.upgrade(dsn)
    rng = random.Random(tools)
    settings = Settings(pool_min_size=1, pool_max_size=1, command_timeout=300)
    async with PostgresClient(settings, dsn=dsn) as client:
        token = await TokenService(client).create(f"bench-{uuid.uuid4().hex[:8]}", Scope.WRITE)
        owner = f"token:{token.info.id}"
        repo = ToolRegistrationRepository(client)
        for start in range(0, tools, SEED_BATCH):
            batch = [
                ModelToolRegistrationCreate(**api_tool_payload(rng, i))
                for i in range(start, min(tools, start + SEED_BATCH))
            ]
            await repo.create_registrations(batch, owner=owner)
        await client.execute("VACUUM ANALYZE")
    return token.secret


# -- server processes --------------------------------------------------------------


@dataclass
class Proc:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""


def start_process(
    name: str, command: list[str], env: dict[str, str], port: int, logs: Path
) -> Proc:
    """Start ``command`` (a server on ``port``) in the repository root; output in ``logs``."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    return Proc(name, f"http://{HOST}:{port}", process, log)


def request(
    url: str, method: str, path: str, token: str | None = None, body: str = ""
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body:
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            headers["Content-Length"] = "0"
        conn.request(method, path, body=body.encode() or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(proc: Proc, timeout: float = 60) -> None:
    """Wait until ``proc`` answers ``GET /health`` with 200; raise with its log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(
                f"{proc.name} server exited with {proc.process.returncode}:\n{proc.log_tail()}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(proc.url, "GET", "/health")[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} server did not answer /health within {timeout} s")


def stop_process(proc: Proc) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    end_process(proc.process)


def end_process(
    process: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, grace: float = 30
) -> None:
    """Send ``sig`` to a running ``process``, then SIGKILL it if it outlives ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def check_alive(*procs: Proc) -> None:
    """Raise RuntimeError, with its log, for the first of ``procs`` that has exited."""
    for proc in procs:
        if proc.process.poll() is not None:
            raise RuntimeError(
                f"the {proc.name} server exited with {proc.process.returncode} during the run:\n"
                f"{proc.log_tail()}"
            )


def print_logs(*procs: Proc | None) -> None:
    """Each server's log to stderr (``None``: not started yet), after a benchmark failed."""
    for proc in procs:
        tail = proc.log_tail().strip() if proc is not None else ""
        if proc is not None and tail:
            print(f"--- {proc.name} server log ---\n{tail}", file=sys.stderr)


def serve(dsn: str, logs: Path, name: str = "toolreg", **env: str) -> Proc:
    """``toolreg serve`` on ``dsn`` (already migrated), warnings only, answering /health.

    ``env`` adds settings (``TOOLREG_...``) to an environment without the caller's
    (active checks are off unless ``env`` sets their interval: ``QUIET_CHECKS``).
    """
    port = free_port()
    command = [TOOLREG, "serve", "--host", HOST, "--port", str(port), "--no-migrate"]
    command += ["--log-level", "warning"]
    settings = clean_env(DATABASE_URL=dsn, **(QUIET_CHECKS | env))
    proc = start_process(name, command, settings, port, logs)
    try:
        wait_ready(proc)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@contextlib.contextmanager
def served(work: Path, tools: int = 0) -> Iterator[tuple[str, str, Proc]]:
    """A throwaway :class:`Database` seeded by :func:`prepare`, and :func:`serve` on it.

    Yields the database's DSN, the write token's secret and the server. Afterwards the
    server and the database are gone; a server that died meanwhile raises RuntimeError,
    and on any error its log goes to stderr first.
    """
    db = Database()
    proc = None
    try:
        dsn = asyncio.run(db.start())
        token = asyncio.run(prepare(dsn, tools))
        proc = serve(dsn, work)
        yield dsn, token, proc
        check_alive(proc)
    except BaseException:
        print_logs(proc)
        raise
    finally:
        if proc is not None:
            stop_process(proc)
        asyncio.run(db.stop())
