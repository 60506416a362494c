"""Made-up methods and random paths must not grow /metrics: its labels come from a closed set."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Server

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
REQUESTS = 3000
CONCURRENCY = 20
MAX_SERIES = 16  # the flood can only hit a few (method, route, status) combinations
MAX_BYTES = 64 * 1024


_FOREIGN_METHODS = ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "PURGE", "REPORT", "LINK", "BIND")


def _junk(n: int) -> tuple[str, str]:
    """A method the app does not serve and, in turn, a real route, a templated route and a
    random path. Every other round of four methods is made up (the HTTP parser answers 400);
    the rest belong to other HTTP protocols, and reach the app."""
    method = f"XRANDOM{n}" if n // 4 % 2 else _FOREIGN_METHODS[n // 8 % len(_FOREIGN_METHODS)]
    noise = uuid.uuid4().hex
    path = ("/v1/tools", f"/v1/tools/{noise}", f"/no/such/{noise}", f"/{noise}")[n % 4]
    return method, path


async def _flood(http: httpx.AsyncClient) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        method, path = _junk(n)
        async with gate:
            response = await http.request(method, path)
        # 400: the HTTP parser refuses a method it does not know before the app sees it.
        assert response.status_code in (400, 404, 405), (method, path, response.status_code)

    await asyncio.gather(*(one(n) for n in range(REQUESTS)))
    # Known methods on random paths, too: the path must not become a label either.
    for n in range(200):
        assert (await http.get(f"/nowhere/{n}/{uuid.uuid4().hex}")).status_code == 404


def _request_series(text: str) -> list[dict[str, str]]:
    for family in text_string_to_metric_families(text):
        if family.name == "toolreg_http_requests":  # the parser drops the _total suffix
            return [sample.labels for sample in family.samples if sample.name.endswith("_total")]
    raise AssertionError("toolreg_http_requests_total is missing from /metrics")


async def test_made_up_methods_and_paths_do_not_grow_metrics(
    http: httpx.AsyncClient, server: Server
) -> None:
    await _flood(http)
    scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert len(scraped.content) < MAX_BYTES, f"/metrics is {len(scraped.content)} bytes"
    series = _request_series(scraped.text)
    assert len(series) <= MAX_SERIES, f"{len(series)} series of toolreg_http_requests_total"
    assert {s["method"] for s in series} <= METHODS
    routes = {s["route"] for s in series}
    assert not [r for r in routes if r.startswith(("/no/", "/nowhere/")) or len(r) > 64], routes
    labelled = {(s["method"], s["route"], s["status"]) for s in series}
    # A real route with a wrong method keeps its template; a path that matches nothing
    # is "unmatched", whatever the method.
    assert ("other", "/v1/tools", "405") in labelled
    assert ("other", "/v1/tools/{tool_id}", "405") in labelled
    assert ("other", "unmatched", "404") in labelled
    assert ("GET", "unmatched", "404") in labelled


async def test_metrics_exposition_is_well_formed(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).status_code == 200
    scraped = await http.get("/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(scraped.text)}
    assert {"toolreg_http_requests", "toolreg_http_request_duration_seconds"} <= names
    assert {"toolreg_db_pool_connections", "toolreg_db_pool_connections_in_use"} <= names
