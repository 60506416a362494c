"""The registry server against a bare FastAPI endpoint running the same SQL.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_api [--tools 10000] [--seconds 10] [--rounds 3]

With ``DATABASE_URL`` set it creates a throwaway database on that server and
drops it after; otherwise it starts the embedded PostgreSQL in a fresh
temporary data dir under /tmp, and stops and removes it after.

It seeds ``--tools`` registrations through ``create_registrations`` (batches
of 1000), all owned by a ``write`` token it creates with ``TokenService``,
then starts two servers as subprocesses on loopback, on the same database,
each one uvicorn worker with the registry's default settings:

* full: ``toolreg serve --no-migrate --log-level warning`` (the whole app:
  middleware, validation, bearer token, ownership check, metrics);
* bare: this module with ``--bare-server``, a minimal FastAPI app with an
  asyncpg pool of the registry's default size and the same orjson JSONB codec,
  whose two endpoints run only the raw statement (and have no auth at all:
  that is the point of the comparison)::

      GET  /v1/tools/{tool_id}            SELECT * FROM tool_registrations WHERE tool_id = $1
      POST /v1/tools/{tool_id}/heartbeat  UPDATE tool_registrations SET last_heartbeat = now()
                                          WHERE tool_id = $1                 (204)
      GET  /v1/tools?limit=1000           SELECT json_agg(t) FROM (SELECT * ... ORDER BY
      POST /v1/tools/search               tool_id LIMIT n) t, the text passed through (the
                                          search with its capabilities @> $1 too)

``list`` and ``search`` time a page of 1,000 tools (``GET /v1/tools?limit=1000``
and a search on ``{"operations": ["read"]}``, which about 37% of the tools
declare) against that bare ``json_agg`` endpoint: the full app builds the
page's JSON in PostgreSQL too, and the target is >= 0.9 of the bare endpoint.

Load comes from a separate process on loopback: ``wrk`` (Debian's: ``apt-get
install wrk``; 32 connections, 2 threads, a small Lua script picking a random
seeded tool id per request; the heartbeat carries the token) or, without wrk or
with ``--client python``, an asyncio HTTP/1.1 client in a subprocess. After an
untimed warm-up of every endpoint on both servers, rounds alternate full, bare,
full, bare (per endpoint) and the table shows the medians: requests per
second, their ratio (target >= 0.5 for ``get`` and ``heartbeat``, >= 0.9
for ``list`` and ``search``), each round's own ratio, and the full app's p99
latency (target < 50 ms, for ``get`` and ``heartbeat``). Each run also records the CPU time the
server process and the PostgreSQL server's processes spent per request, which
other work on the machine disturbs less than throughput does. The exit status
is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import asyncpg
import orjson

from benchmarks._support import (
    HOST,
    ID_PREFIX,
    QUIET_CHECKS,
    REPO_ROOT,
    TOOLREG,
    Database,
    Proc,
    check_alive,
    clean_env,
    cpu_spent,
    cpu_times,
    find_postmaster,
    free_port,
    machine_load,
    postgres_pids,
    prepare,
    print_logs,
    request,
    run_in_work_dir,
    start_process,
    stop_process,
    tool_id,
    wait_ready,
)

GET_SQL = "SELECT * FROM tool_registrations WHERE tool_id = $1"
HEARTBEAT_SQL = "UPDATE tool_registrations SET last_heartbeat = now() WHERE tool_id = $1"
PAGE_SQL = (
    "SELECT json_agg(t)::text FROM (SELECT * FROM tool_registrations"
    " WHERE $1::jsonb IS NULL OR capabilities @> $1::jsonb ORDER BY tool_id LIMIT $2) t"
)
PAGE = 1000  # rows of a list or search page
SEARCH_BODY = orjson.dumps({"capabilities": {"operations": ["read"]}, "limit": PAGE}).decode()
RATIO_TARGETS = {"get": 0.5, "heartbeat": 0.5, "list": 0.9, "search": 0.9}
P99_TARGET_MS = 50.0  # for the point endpoints: a page of 1,000 tools has none
RESULT_MARK = "BENCH_JSON "
NO_TOKEN = "-"  # noqa: S105 - the load generators' "no Authorization header"
ENDPOINTS = ("get", "heartbeat", "list", "search")
METHODS = {"get": "GET", "heartbeat": "POST", "list": "GET", "search": "POST"}
SIDES = ("full", "bare")


# -- the bare comparison server ------------------------------------------------


def run_bare_server(port: int, dsn: str) -> None:
    """A minimal FastAPI app on uvicorn: the raw statements, no auth, no middleware."""
    import uvicorn
    from fastapi import FastAPI, Response

    from omninode_bridge.settings import Settings

    settings = Settings()  # the registry's defaults (the parent cleans the environment)

    async def init(conn: asyncpg.Connection) -> None:
        for type_name in ("jsonb", "json"):
            await conn.set_type_codec(
                type_name,
                encoder=lambda v: orjson.dumps(v).decode(),
                decoder=orjson.loads,
                schema="pg_catalog",
            )

    pool: dict[str, asyncpg.Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool["p"] = await asyncpg.create_pool(
            dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            statement_cache_size=settings.statement_cache_size,
            init=init,
        )
        try:
            yield
        finally:
            await pool["p"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/v1/tools/{tool_id}")
    async def get_tool(tool_id: str) -> Response:
        row = await pool["p"].fetchrow(GET_SQL, tool_id)
        if row is None:
            return Response(status_code=404)
        return Response(orjson.dumps(dict(row), default=str), media_type="application/json")

    @app.post("/v1/tools/{tool_id}/heartbeat")
    async def heartbeat(tool_id: str) -> Response:
        status = await pool["p"].execute(HEARTBEAT_SQL, tool_id)
        return Response(status_code=204 if status.endswith(" 1") else 404)

    async def page(capabilities: Any, limit: int) -> Response:
        # The jsonb parameter goes through the orjson codec; the page comes back
        # as text (::text), passed through.
        body = await pool["p"].fetchval(PAGE_SQL, capabilities, limit)
        return Response((body or "[]").encode(), media_type="application/json")

    @app.get("/v1/tools")
    async def list_tools(limit: int = 100) -> Response:
        return await page(None, limit)

    async def search(request: Any) -> Response:  # a plain Starlette endpoint: no validation
        query = orjson.loads(await request.body())
        return await page(query.get("capabilities"), query.get("limit", 100))

    app.router.add_route("/v1/tools/search", search, methods=["POST"])

    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=30,
        server_header=False,
        access_log=False,
    )
    uvicorn.Server(config).run()


# -- load: wrk, or an asyncio client in a subprocess -----------------------------

WRK_SCRIPT = r"""
-- args: endpoint (get, heartbeat, list, search), number of tools, id prefix,
-- token ("-" for none), the page request's path and body (list, search)
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
end

local endpoint, n, prefix, headers, page_path, page_body
function init(args)
  endpoint, n, prefix, page_path = args[1], tonumber(args[2]), args[3], args[5]
  headers = {}
  if args[4] ~= "-" then headers["Authorization"] = "Bearer " .. args[4] end
  if endpoint == "heartbeat" then headers["Content-Length"] = "0" end
  if endpoint == "search" then
    headers["Content-Type"] = "application/json"
    page_body = args[6]
  end
  math.randomseed(thread_no * 104729 + os.time())
end

function request()
  if endpoint == "list" then return wrk.format("GET", page_path, headers) end
  if endpoint == "search" then return wrk.format("POST", page_path, headers, page_body) end
  local path = "/v1/tools/" .. string.format("%s%07d", prefix, math.random(0, n - 1))
  if endpoint == "heartbeat" then return wrk.format("POST", path .. "/heartbeat", headers) end
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Load:
    """One load run's numbers (latencies in milliseconds)."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int
    socket_errors: int
    server_cpu_us: float = 0.0  # server process CPU per request
    db_cpu_us: float = 0.0  # PostgreSQL processes' CPU per request
    server_cpu_share: float = 0.0  # server CPU seconds per wall second

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @classmethod
    def parse(cls, output: str) -> Load:
        for line in output.splitlines():
            if line.startswith(RESULT_MARK):
                d = json.loads(line[len(RESULT_MARK) :])
                return cls(
                    requests=d["requests"],
                    seconds=d["duration_us"] / 1e6,
                    p50_ms=d["p50_us"] / 1000,
                    p90_ms=d["p90_us"] / 1000,
                    p99_ms=d["p99_us"] / 1000,
                    max_ms=d["max_us"] / 1000,
                    status_errors=d["status_errors"],
                    socket_errors=d["socket_errors"],
                )
        raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")


@dataclass
class LoadSpec:
    client: str  # "wrk" or "python"
    connections: int
    threads: int
    tools: int
    token: str
    script: Path
    postmaster: int | None = None  # PostgreSQL's main process, for its CPU time


def page_request(endpoint: str) -> tuple[str, str]:
    """The path and body of a ``list`` or ``search`` request (a page of PAGE tools)."""
    if endpoint == "search":
        return "/v1/tools/search", SEARCH_BODY
    return f"/v1/tools?limit={PAGE}", ""


def load_command(spec: LoadSpec, url: str, endpoint: str, seconds: float) -> list[str]:
    token = spec.token if endpoint == "heartbeat" else NO_TOKEN
    page_path, page_body = page_request(endpoint)
    if spec.client == "wrk":
        return [
            "wrk",
            f"-t{spec.threads}",
            f"-c{spec.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(spec.script),
            url,
            "--",
            endpoint,
            str(spec.tools),
            ID_PREFIX,
            token,
            page_path,
            page_body or "-",
        ]
    return [
        sys.executable,
        "-m",
        "benchmarks.bench_api",
        "--load-client",
        url,
        endpoint,
        str(spec.tools),
        token,
        "--connections",
        str(spec.connections),
        "--seconds",
        str(seconds),
    ]


def run_load(spec: LoadSpec, url: str, endpoint: str, seconds: float, server_pid: int) -> Load:
    command = load_command(spec, url, endpoint, seconds)
    server_before, db_before = cpu_times([server_pid]), cpu_times(postgres_pids(spec.postmaster))
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        cwd=REPO_ROOT,
    )
    wall = time.perf_counter() - started
    server_cpu = cpu_spent(server_before, cpu_times([server_pid]))
    db_cpu = cpu_spent(db_before, cpu_times(postgres_pids(spec.postmaster)))
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {done.returncode}: {done.stderr[-2000:]}")
    load = Load.parse(done.stdout)
    n = max(1, load.requests)
    load.server_cpu_us = server_cpu / n * 1e6
    load.db_cpu_us = db_cpu / n * 1e6 if spec.postmaster is not None else float("nan")
    load.server_cpu_share = server_cpu / wall
    return load


def run_load_client(
    url: str, endpoint: str, tools: int, token: str, conns: int, secs: float
) -> None:
    """The fallback load generator: keep-alive HTTP/1.1 on ``conns`` connections, one process."""
    parts = urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 80
    auth = f"Authorization: Bearer {token}\r\n" if token != NO_TOKEN else ""
    method = METHODS[endpoint]
    page_path, page_body = page_request(endpoint)
    payload = page_body.encode()
    if payload:
        auth += "Content-Type: application/json\r\n"
    latencies: list[float] = []
    errors = {"status": 0, "socket": 0}

    async def connection(rng: random.Random, deadline: float) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        clock = time.perf_counter
        try:
            while clock() < deadline:
                if endpoint in ("list", "search"):
                    path = page_path
                else:
                    path = f"/v1/tools/{tool_id(rng.randrange(tools))}"
                if endpoint == "heartbeat":
                    path += "/heartbeat"
                request = (
                    f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                ).encode() + payload
                started = clock()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                latencies.append(clock() - started)
                if int(head[9:12]) >= 400:
                    errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError):
            errors["socket"] += 1
        finally:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + secs
        await asyncio.gather(*(connection(random.Random(i), deadline) for i in range(conns)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> int:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e6)

    result = {
        "requests": len(latencies),
        "duration_us": round(elapsed * 1e6),
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "max_us": round(ordered[-1] * 1e6),
        "mean_us": statistics.fmean(ordered) * 1e6,
        "status_errors": errors["status"],
        "socket_errors": errors["socket"],
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def check_servers(full: Proc, bare: Proc, token: str) -> None:
    """Both servers answer the same row and accept a heartbeat (untimed sanity)."""
    path = f"/v1/tools/{tool_id(0)}"
    full_status, full_body = request(full.url, "GET", path)
    bare_status, bare_body = request(bare.url, "GET", path)
    assert (full_status, bare_status) == (200, 200), (full_status, bare_status)
    ours, raw = orjson.loads(full_body), orjson.loads(bare_body)
    for key in ("tool_id", "node_type", "capabilities", "endpoints", "metadata"):
        assert ours[key] == raw[key], key
    assert request(full.url, "POST", path + "/heartbeat", token)[0] == 204
    assert request(bare.url, "POST", path + "/heartbeat")[0] == 204
    assert request(full.url, "POST", path + "/heartbeat")[0] == 401  # the token matters
    for endpoint in ("list", "search"):  # the same page of tools, in the same order
        page_path, page_body = page_request(endpoint)
        method = METHODS[endpoint]
        full_status, full_body = request(full.url, method, page_path, body=page_body)
        bare_status, bare_body = request(bare.url, method, page_path, body=page_body)
        assert (full_status, bare_status) == (200, 200), (endpoint, full_status, bare_status)
        items, rows = orjson.loads(full_body)["items"], orjson.loads(bare_body)
        assert 0 < len(items) <= PAGE, (endpoint, len(items))  # PAGE from 2,700 tools up
        assert [t["tool_id"] for t in items] == [t["tool_id"] for t in rows], endpoint
        assert items[0]["capabilities"] == rows[0]["capabilities"], endpoint


# -- the run ---------------------------------------------------------------------------


class PairedLoads:
    """Load runs of two sides, ours and a baseline (``sides``), taken round by round."""

    sides: ClassVar[tuple[str, str]] = SIDES  # (ours, the baseline)
    runs: dict[str, list[Load]]

    def median(self, side: str, attr: str) -> float:
        return float(statistics.median(getattr(load, attr) for load in self.runs[side]))

    @property
    def ratio(self) -> float:
        ours, baseline = self.sides
        return self.median(ours, "rps") / self.median(baseline, "rps")

    @property
    def round_ratios(self) -> list[float]:
        """Each round's pair (run back to back): how much the machine moved."""
        ours, baseline = self.sides
        pairs = zip(self.runs[ours], self.runs[baseline], strict=True)
        return [mine.rps / theirs.rps for mine, theirs in pairs]

    @property
    def clean(self) -> bool:
        """No status or socket errors on either side."""
        return all(
            load.status_errors == 0 and load.socket_errors == 0
            for loads in self.runs.values()
            for load in loads
        )


@dataclass
class Row(PairedLoads):
    endpoint: str
    runs: dict[str, list[Load]] = field(default_factory=lambda: {s: [] for s in SIDES})

    @property
    def target(self) -> float:
        return RATIO_TARGETS[self.endpoint]

    @property
    def ratio_ok(self) -> bool:
        return self.ratio >= self.target

    @property
    def p99_target(self) -> bool:
        """Whether the p99 target applies (the point endpoints)."""
        return self.endpoint in ("get", "heartbeat")

    @property
    def p99_ok(self) -> bool:
        return not self.p99_target or self.median("full", "p99_ms") < P99_TARGET_MS


LABELS = {
    "get": "`GET /v1/tools/{id}`",
    "heartbeat": "`POST /v1/tools/{id}/heartbeat`",
    "list": f"`GET /v1/tools?limit={PAGE}`",
    "search": f"`POST /v1/tools/search` ({PAGE} rows)",
}


def table(rows: list[Row]) -> str:
    lines = [
        "| endpoint | full req/s | bare req/s | ratio (target) | full p50 ms "
        "| full p99 ms (< 50 for get, heartbeat) | bare p99 ms | ratio per round | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        verdict = "pass" if row.ratio_ok and row.p99_ok and row.clean else "FAIL"
        if not row.clean:
            verdict += " (errors)"
        lines.append(
            f"| {LABELS[row.endpoint]} | {row.median('full', 'rps'):,.0f} "
            f"| {row.median('bare', 'rps'):,.0f} | {row.ratio:.2f} "
            f"(>= {row.target}: {'pass' if row.ratio_ok else 'fail'}) "
            f"| {row.median('full', 'p50_ms'):.1f} | {row.median('full', 'p99_ms'):.1f}"
            f"{(' (pass)' if row.p99_ok else ' (fail)') if row.p99_target else ''} "
            f"| {row.median('bare', 'p99_ms'):.1f} "
            f"| {' / '.join(f'{r:.2f}' for r in row.round_ratios)} | {verdict} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[Row]) -> str:
    lines = [
        "| endpoint | side | server CPU us/req | PostgreSQL CPU us/req | server CPU share |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        for side in SIDES:
            lines.append(
                f"| {LABELS[row.endpoint]} | {side} | {row.median(side, 'server_cpu_us'):.0f} "
                f"| {row.median(side, 'db_cpu_us'):.0f} "
                f"| {row.median(side, 'server_cpu_share'):.2f} |"
            )
    return "\n".join(lines)


def describe(load: Load) -> str:
    errors = ""
    if load.status_errors or load.socket_errors:
        errors = f"  ERRORS status={load.status_errors} socket={load.socket_errors}"
    return (
        f"{load.rps:>9,.0f} req/s  p50 {load.p50_ms:6.2f}  p99 {load.p99_ms:6.2f}  "
        f"max {load.max_ms:7.2f} ms  server CPU {load.server_cpu_us:5.0f} us/req "
        f"({load.server_cpu_share:.2f})  db CPU {load.db_cpu_us:5.0f} us/req{errors}"
    )


def benchmark(args: argparse.Namespace, work: Path) -> list[Row]:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    db = Database()
    procs: list[Proc] = []
    try:
        dsn = asyncio.run(db.start())
        print(f"seeding {args.tools} tools (create_registrations, owned by a write token)...")
        started = time.perf_counter()
        token = asyncio.run(prepare(dsn, args.tools))
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)

        env = clean_env(DATABASE_URL=dsn, **QUIET_CHECKS)
        full_env = env | dict(setting.split("=", 1) for setting in args.full_env)
        full_port, bare_port = free_port(), free_port()
        full_cmd = [TOOLREG, "serve", "--port", str(full_port), "--no-migrate"]
        full_cmd += ["--log-level", "warning"]
        bare_cmd = [sys.executable, "-m", "benchmarks.bench_api", "--bare-server"]
        bare_cmd += ["--port", str(bare_port), "--dsn", dsn]
        procs.append(start_process("full", full_cmd, full_env, full_port, work))
        procs.append(start_process("bare", bare_cmd, env, bare_port, work))
        for proc in procs:
            wait_ready(proc)
        servers = dict(zip(SIDES, procs, strict=True))
        check_servers(servers["full"], servers["bare"], token)

        script = work / "bench_api.lua"
        script.write_text(WRK_SCRIPT)
        postmaster = asyncio.run(find_postmaster(dsn))
        spec = LoadSpec(
            client, args.connections, args.threads, args.tools, token, script, postmaster
        )
        print(
            f"load: {client}, {args.connections} connections"
            f"{f', {args.threads} threads' if client == 'wrk' else ''}, {args.seconds:g} s a run,"
            f" {args.rounds} rounds (full, bare alternating) after a {args.warmup:g} s warm-up",
            flush=True,
        )
        print(machine_load("before"), flush=True)
        for endpoint in args.endpoints:
            for side in SIDES:
                proc = servers[side]
                run_load(spec, proc.url, endpoint, args.warmup, proc.process.pid)
        rows = [Row(endpoint) for endpoint in args.endpoints]
        for round_no in range(1, args.rounds + 1):
            for row in rows:
                for side in SIDES:
                    proc = servers[side]
                    load = run_load(spec, proc.url, row.endpoint, args.seconds, proc.process.pid)
                    row.runs[side].append(load)
                    print(f"  round {round_no} {row.endpoint:<9} {side:<4} {describe(load)}")
                    sys.stdout.flush()
        print(machine_load("after"), flush=True)
        check_alive(*procs)
        return rows
    except BaseException:
        print_logs(*procs)
        raise
    finally:
        for proc in procs:
            stop_process(proc)
        asyncio.run(db.stop())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=int, default=10_000, help="tools to seed")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per side and endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed run first, seconds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--endpoints",
        nargs="+",
        choices=ENDPOINTS,
        default=list(ENDPOINTS),
        help="which endpoints to time (default: all)",
    )
    parser.add_argument(
        "--full-env",
        action="append",
        default=[],
        metavar="TOOLREG_NAME=VALUE",
        help="a setting for the full server only (repeatable), e.g. to take its "
        "background work out of a diagnostic run",
    )
    parser.add_argument("--json", type=Path, help="also write the runs here")
    # Internal modes: the bare comparison server and the fallback load client.
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--load-client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.tools < 1 or args.connections < 1 or args.threads < 1:
        parser.error("--rounds, --tools, --connections and --threads must be at least 1")
    for setting in args.full_env:
        if not setting.startswith("TOOLREG_") or "=" not in setting:
            parser.error(f"--full-env {setting!r}: expected TOOLREG_NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server:
        run_bare_server(args.port, args.dsn)
        return 0
    if args.load_client:
        url, endpoint, tools, token = args.load_client
        run_load_client(url, endpoint, int(tools), token, args.connections, args.seconds)
        return 0
    rows = run_in_work_dir("toolreg-api-bench-run-", benchmark, args)
    print()
    print(table(rows))
    print()
    print(cpu_table(rows))
    if args.json:
        payload = {
            row.endpoint: {s: [asdict(x) for x in row.runs[s]] for s in SIDES} for row in rows
        }
        args.json.write_text(json.dumps(payload, indent=2))
    ok = all(row.ratio_ok and row.p99_ok and row.clean for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
