"""``TOOLREG_READS_REQUIRE_TOKEN`` covers /metrics, /openapi.json, /docs and /redoc too."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Server, assert_problem, bearer, running_server

META = ("/metrics", "/openapi.json", "/docs", "/redoc")


@pytest.fixture(scope="module")
def guarded(module_db: str) -> Iterator[Server]:
    """A server that requires a token for reads."""
    with running_server(module_db, env={"TOOLREG_READS_REQUIRE_TOKEN": "true"}) as running:
        yield running


def _assert_page(path: str, response: httpx.Response) -> None:
    assert response.status_code == 200, (path, response.text)
    if path == "/metrics":
        assert response.headers["content-type"].startswith("text/plain")
        assert "toolreg_http_requests_total" in response.text
    elif path == "/openapi.json":
        assert "/v1/tools/{tool_id}" in response.json()["paths"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert ("swagger" if path == "/docs" else "redoc") in response.text.lower()
        assert "/openapi.json" in response.text


@pytest.mark.parametrize("path", META)
async def test_meta_pages_need_a_token_when_reads_do(guarded: Server, path: str) -> None:
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=30) as http:
        refused = assert_problem(await http.get(path), 401)
        assert refused["instance"] == path
        assert (await http.get(path)).headers["www-authenticate"].startswith("Bearer")
        assert_problem(await http.get(path, headers=bearer("trg_" + "x" * 43)), 401)
        for scope in ("read", "write", "admin"):
            _assert_page(path, await http.get(path, headers=bearer(await guarded.token(scope))))
        assert (await http.get("/health")).status_code == 200


async def test_guarded_spec_still_lists_no_meta_routes(guarded: Server) -> None:
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=30) as http:
        spec = (await http.get("/openapi.json", headers=bearer(await guarded.token("read")))).json()
    assert not set(META) & set(spec["paths"])
    assert spec["info"]["title"] == "omninode tool registry"


@pytest.mark.parametrize("path", META)
async def test_meta_pages_stay_open_by_default(http: httpx.AsyncClient, path: str) -> None:
    _assert_page(path, await http.get(path))
