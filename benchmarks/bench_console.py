"""The web console's tools page: time to first render at 10k and 100k tools, and bytes sent.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_console [--tools 10000 100000] [--repeat 50] [--browser]

For each size: a throwaway database (``DATABASE_URL``'s server, or a fresh
embedded PostgreSQL; ``benchmarks._support.Database``) seeded with that many
registrations of about a kilobyte, and one real ``toolreg serve`` on
127.0.0.1. A client on one kept-alive connection then makes the requests a
browser makes to render the tools page:

* ``GET /ui/`` (the page), its four assets (stylesheet, two scripts, icon),
  and ``POST /v1/console/tools`` with ``{"limit": 50}`` (the first page of
  rows, the counts per health state and the feed position);
* the first data call after the server starts is timed apart: it loads the
  live view (every registration and its health, once per server);
* then ``--repeat`` rounds of the page and the data call ("warm"), and of the
  filtered calls that scan every tool in memory (a health filter, text in the
  tool_id) or read the database (an operation, a ``where`` path).

Server time is the request's round trip on loopback (the client does nothing
else). First render = the page + the data call (assets cached, as on every
visit after the first); a first visit adds the assets. Bytes are response
bodies plus headers, uncompressed. With ``--browser`` (Debian's chromium and
chromium-driver), headless Chromium also loads the page 10 times and reports
the time from navigation start until the rows are in the table.

Exit status 1 when the warm p99 of page + data is not under 300 ms at any size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.support import headless_chromium

from benchmarks._support import (
    Database,
    machine_load,
    pct,
    prepare,
    serve,
    stop_process,
)

TARGET_MS = 300.0
ASSETS = (
    "/ui/static/console.css?v=0.1.0",
    "/ui/static/console.js?v=0.1.0",
    "/ui/static/tools.js?v=0.1.0",
    "/ui/static/favicon.svg",
)
FILTERS: dict[str, dict[str, Any]] = {
    "health=stale (memory scan)": {"limit": 50, "health": "stale"},
    "tool_id contains (memory scan)": {"limit": 50, "tool_id_contains": "-0042"},
    "operation (database)": {"limit": 50, "operation": "sign"},
    "where path (database)": {"limit": 50, "where": "$.max_file_size >= 50000000"},
}


@dataclass
class Size:
    tools: int
    first_data_ms: float = 0.0
    page_ms: list[float] = field(default_factory=list)
    data_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    assets_ms: float = 0.0
    page_bytes: int = 0
    assets_bytes: int = 0
    data_bytes: int = 0
    rows: int = 0
    filters: dict[str, list[float]] = field(default_factory=dict)
    browser_ms: list[float] = field(default_factory=list)


def _size(response: httpx.Response) -> int:
    head = sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 17
    return head + len(response.content)


def _timed(client: httpx.Client, method: str, path: str, **kw: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.request(method, path, **kw)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return elapsed, response


def measure(url: str, size: Size, repeat: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        first, data = _timed(client, "POST", "/v1/console/tools", json={"limit": 50})
        size.first_data_ms = first
        assert data.json()["counts"]["total"] == size.tools
        page_ms, page = _timed(client, "GET", "/ui/")
        size.page_bytes = _size(page)
        for asset in ASSETS:
            ms, response = _timed(client, "GET", asset)
            size.assets_ms += ms
            size.assets_bytes += _size(response)
        for _ in range(repeat):
            page_ms, _page = _timed(client, "GET", "/ui/")
            data_ms, data = _timed(client, "POST", "/v1/console/tools", json={"limit": 50})
            size.page_ms.append(page_ms)
            size.data_ms.append(data_ms)
            size.render_ms.append(page_ms + data_ms)
        size.data_bytes = _size(data)
        size.rows = len(data.json()["items"])
        for name, body in FILTERS.items():
            size.filters[name] = [
                _timed(client, "POST", "/v1/console/tools", json=body)[0] for _ in range(repeat)
            ]


def browser_render(url: str, rounds: int = 10) -> list[float]:
    """Milliseconds from navigation start until the table holds its rows, in Chromium."""
    driver = headless_chromium()
    times: list[float] = []
    try:
        for _ in range(rounds + 1):  # the first warms the cache
            driver.get(url + "/ui/")
            deadline = time.monotonic() + 30
            loaded = None
            while loaded is None and time.monotonic() < deadline:
                loaded = driver.execute_script(
                    "const t = document.querySelector('#tools').dataset.loadedAt;"
                    "return t ? Number(t) - performance.timeOrigin : null;"
                )
                if loaded is None:
                    time.sleep(0.01)
            assert loaded is not None, "the table never loaded"
            times.append(float(loaded))
    finally:
        driver.quit()
    return times[1:]


def run_size(tools: int, args: argparse.Namespace, work: Path) -> Size:
    db = Database()
    proc = None
    size = Size(tools)
    try:
        dsn = asyncio.run(db.start())
        started = time.monotonic()
        asyncio.run(prepare(dsn, tools))
        print(f"{tools:,} tools seeded in {time.monotonic() - started:.1f} s", flush=True)
        proc = serve(dsn, work, f"toolreg-{tools}")
        measure(proc.url, size, args.repeat)
        if args.browser:
            size.browser_ms = browser_render(proc.url)
    finally:
        if proc is not None:
            stop_process(proc)
        asyncio.run(db.stop())
    return size


def _p(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{pct(ordered, 50):.1f} / {pct(ordered, 99):.1f}"


def table(sizes: list[Size]) -> str:
    lines = [
        "| tools | first render p50 / p99 ms (page + data) | page ms | data ms | "
        "first data call ms (loads the live view) | first visit adds (4 assets) ms | "
        "rows | bytes: page / data / assets |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sizes:
        lines.append(
            f"| {s.tools:,} | {_p(s.render_ms)} | {_p(s.page_ms)} | {_p(s.data_ms)} | "
            f"{s.first_data_ms:.0f} | {s.assets_ms:.1f} | {s.rows} | "
            f"{s.page_bytes:,} / {s.data_bytes:,} / {s.assets_bytes:,} |"
        )
    lines += ["", "| filter | " + " | ".join(f"{s.tools:,} p50 / p99 ms" for s in sizes) + " |"]
    lines.append("| --- |" + " ---: |" * len(sizes))
    for name in FILTERS:
        lines.append(f"| {name} | " + " | ".join(_p(s.filters[name]) for s in sizes) + " |")
    if any(s.browser_ms for s in sizes):
        lines += ["", "| tools | Chromium: navigation to rows in the table, median / max ms |"]
        lines.append("| ---: | ---: |")
        for s in sizes:
            if s.browser_ms:
                lines.append(
                    f"| {s.tools:,} | {statistics.median(s.browser_ms):.0f} / "
                    f"{max(s.browser_ms):.0f} |"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--browser", action="store_true", help="also time Chromium's render")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_load("before"), flush=True)
    with tempfile.TemporaryDirectory(prefix="toolreg-console-bench-", dir="/tmp") as tmp:
        sizes = [run_size(n, args, Path(tmp)) for n in args.tools]
    print(machine_load("after"), flush=True)
    print()
    print(table(sizes))
    worst = max(pct(sorted(s.render_ms), 99) for s in sizes)
    ok = worst < TARGET_MS
    print()
    print(f"first render p99 {worst:.1f} ms: {'under' if ok else 'NOT under'} {TARGET_MS:g} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
