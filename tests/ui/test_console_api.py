"""The endpoints the console reads, over real HTTP (no browser): tokens, a tool's history,
discovery's explanation, the console's table, the pages and their assets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import httpx
import pytest

from omninode_bridge.api.routes.history import timeline
from omninode_bridge.models import ChangeEvent, ChangeKind
from tests.support import Server, start_server, stop_server
from tests.ui.support import LIVE_ENV, Registry, eventually


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- tokens ---------------------------------------------------------------------------------


def test_tokens_over_http(console_server: Server, registry: Registry) -> None:
    http = registry.http
    made = http.post("/v1/tokens", json={"name": "api-made", "scope": "read"})
    assert made.status_code == 201
    body = made.json()
    assert body["name"] == "api-made" and body["scope"] == "read"
    assert body["secret"].startswith("trg_")
    listed = http.get("/v1/tokens").json()
    assert "api-made" in [t["name"] for t in listed]
    assert all("secret" not in t for t in listed)
    me = httpx.get(console_server.base_url + "/v1/tokens/me", headers=_bearer(body["secret"]))
    assert me.json() == {"id": body["id"], "name": "api-made", "scope": "read"}
    again = http.post("/v1/tokens", json={"name": "api-made"})
    assert again.status_code == 422
    assert "already exists" in again.json()["errors"][0]["message"]
    generated = http.post("/v1/tokens", json={}).json()
    assert generated["name"].startswith("token-") and generated["scope"] == "write"
    assert http.delete("/v1/tokens/api-made").status_code == 204
    assert http.delete("/v1/tokens/api-made").status_code == 404
    gone = httpx.get(console_server.base_url + "/v1/tokens/me", headers=_bearer(body["secret"]))
    assert gone.status_code == 401
    assert httpx.get(console_server.base_url + "/v1/tokens/me").status_code == 401


# -- history --------------------------------------------------------------------------------


def _event(kind: ChangeKind, at: datetime, n: int) -> ChangeEvent:
    return ChangeEvent(cursor=f"{n}-1", kind=kind, tool_id="t", occurred_at=at, reason=kind.value)


def test_timeline_folds_events_into_bands() -> None:
    end = datetime(2026, 1, 2, tzinfo=UTC)
    start = end - timedelta(hours=24)
    at = [start - timedelta(hours=1)] + [start + timedelta(hours=h) for h in (2, 5, 6, 9, 12)]
    kinds = [
        ChangeKind.CREATED,  # before the window: sets the starting states
        ChangeKind.CRITICAL,
        ChangeKind.PASSING,
        ChangeKind.STALE,
        ChangeKind.HEALTHY,
        ChangeKind.DELETED,
    ]
    result = timeline(
        "t", [_event(k, a, i) for i, (k, a) in enumerate(zip(kinds, at, strict=True))], start, end
    )
    lanes: dict[str, list[tuple[str, float, float]]] = {"heartbeat": [], "checks": []}
    for band in result.bands:
        hours = ((band.start - start) / timedelta(hours=1), (band.end - start) / timedelta(hours=1))
        lanes[band.lane].append((band.state, *hours))
    assert lanes["heartbeat"] == [
        ("fresh", 0, 6),
        ("stale", 6, 9),
        ("fresh", 9, 12),
        ("absent", 12, 24),
    ]
    assert lanes["checks"] == [
        ("unknown", 0, 2),
        ("critical", 2, 5),
        ("passing", 5, 12),
        ("absent", 12, 24),
    ]
    assert [(t.lane, t.previous, t.state) for t in result.transitions] == [
        ("checks", "unknown", "critical"),
        ("checks", "critical", "passing"),
        ("heartbeat", "fresh", "stale"),
        ("heartbeat", "stale", "fresh"),
        ("heartbeat", "fresh", "absent"),
        ("checks", "passing", "absent"),
    ]
    assert [e.kind for e in result.events][:2] == [ChangeKind.DELETED, ChangeKind.HEALTHY]


def test_history_endpoint(registry: Registry) -> None:
    registry.put("hist-tool", "compute")
    registry.delete("hist-tool")
    found = registry.http.get("/v1/tools/hist-tool/history", params={"hours": 1})
    assert found.status_code == 200
    body = found.json()
    assert [t["state"] for t in body["transitions"] if t["lane"] == "heartbeat"] == [
        "fresh",
        "absent",
    ]
    assert [e["kind"] for e in body["events"]] == ["deleted", "created"]
    assert registry.http.get("/v1/tools/never-was/history").status_code == 404
    assert registry.http.get("/v1/tools/hist-tool/history", params={"hours": 0}).status_code == 422


# -- discovery's explanation ------------------------------------------------------------------


def test_explain_matches_the_404(registry: Registry) -> None:
    for tool_id in ("ex-a", "ex-b"):
        registry.put(
            tool_id,
            "compute",
            capabilities={"operations": ["explained"]},
            endpoints={"explained": "http://127.0.0.1:9/x"},
        )
        registry.heartbeat_at(tool_id, 120)  # past the TTL: stale
    missing = registry.http.get("/v1/discover/explained")
    assert missing.status_code == 404
    explained = registry.http.get("/v1/discover/explained/explain").json()
    problem = missing.json()
    for key in ("declared", "routable", "tools"):
        assert explained[key] == problem[key]
    assert explained["summary"] in problem["detail"]
    assert {t["reason"] for t in explained["tools"]} == {"stale"}
    assert all("since" in t for t in explained["tools"])
    limited = registry.http.get("/v1/discover/explained/explain", params={"limit": 1}).json()
    assert len(limited["tools"]) == 1 and limited["declared"] == 2


# -- the console's table --------------------------------------------------------------------------


def _walk(http: httpx.Client, body: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = http.post("/v1/console/tools", json={**body, "cursor": cursor}).json()
        assert len(page["items"]) <= body["limit"]
        seen += [t["tool_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_console_table_pages_and_filters(registry: Registry) -> None:
    registry.create_many(
        [
            {
                "tool_id": f"ct-{i:03d}",
                "node_type": "compute" if i % 2 else "effect",
                "capabilities": {"operations": ["op-a" if i % 3 else "op-b"], "size": i},
            }
            for i in range(120)
        ]
    )
    ids = [f"ct-{i:03d}" for i in range(120)]
    http = registry.http
    everything = _walk(http, {"limit": 7, "tool_id_contains": "CT-"})  # in memory
    assert everything == ids
    assert _walk(http, {"limit": 9, "operation": "op-b"}) == ids[::3]  # in the database
    assert (
        _walk(http, {"limit": 5, "where": "$.size < 10", "tool_id_contains": "ct-00"}) == ids[:10]
    )
    assert _walk(
        http, {"limit": 4, "node_type": "effect", "health": "healthy", "operation": "op-b"}
    ) == [t for i, t in enumerate(ids) if i % 2 == 0 and i % 3 == 0]
    page = http.post("/v1/console/tools", json={"limit": 3}).json()
    assert page["counts"]["total"] >= 120
    assert page["counts"]["total"] == sum(
        page["counts"][k] for k in ("healthy", "stale", "critical")
    )
    assert set(page["items"][0]) == {
        "tool_id",
        "node_type",
        "operations",
        "health",
        "last_heartbeat",
        "owner",
    }
    assert page["position"]


@pytest.mark.parametrize(
    "body",
    [
        {"where": "$.size <"},
        {"capabilities": [1]},
        {"node_type": "gizmo"},
        {"cursor": "not-a-cursor"},
    ],
)
def test_console_table_validation_is_the_searchs(registry: Registry, body: dict[str, Any]) -> None:
    search = registry.http.post("/v1/tools/search", json=body)
    console = registry.http.post("/v1/console/tools", json=body)
    assert console.status_code == search.status_code == 422
    assert console.json()["errors"] == search.json()["errors"]


@pytest.mark.parametrize("operation", ["nul\x00inside", "lone\ud800surrogate", "tab\there"])
def test_console_table_refuses_operations_json_cannot_hold(
    registry: Registry, operation: str
) -> None:
    body = json.dumps({"operation": operation})  # ensure_ascii: \ud800 travels escaped
    response = registry.http.post(
        "/v1/console/tools", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "operation"


def test_console_table_follows_health(registry: Registry) -> None:
    registry.put("ct-going-stale", "reducer")
    registry.heartbeat_at("ct-going-stale", 120)

    def health() -> str:
        page = registry.http.post(
            "/v1/console/tools", json={"tool_id_contains": "ct-going-stale", "limit": 1}
        ).json()
        return str(page["items"][0]["health"])

    eventually(lambda: health() == "stale", 10, "stale in the table")
    stale = registry.http.post("/v1/console/tools", json={"health": "stale", "limit": 500}).json()
    assert "ct-going-stale" in [t["tool_id"] for t in stale["items"]]


# -- pages and assets -----------------------------------------------------------------------------


def test_pages_and_assets_are_served(console_server: Server) -> None:
    base = console_server.base_url
    for path in ("/ui/", "/ui/tool?id=x", "/ui/discover", "/ui/admin"):
        page = httpx.get(base + path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text and "https://" not in page.text
    assert httpx.get(base + "/ui", follow_redirects=False).headers["location"] == "/ui/"
    script = httpx.get(base + "/ui/static/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(base + "/ui/static/nothing.js").status_code == 404
    for name in (
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "redoc.standalone.js",
        "swagger-init.js",
    ):
        assert httpx.get(base + "/docs/static/" + name).status_code == 200
    assert httpx.get(base + "/docs/static/../../etc/passwd").status_code == 404
    docs = httpx.get(base + "/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]


def test_templates_and_assets_ship_in_the_package() -> None:
    root = resources.files("omninode_bridge.api.ui")
    for name in ("base.html", "tools.html", "tool.html", "discover.html", "admin.html"):
        assert root.joinpath("templates", name).is_file()
    for name in ("console.js", "tools.js", "tool.js", "discover.js", "admin.js", "console.css"):
        assert root.joinpath("static", name).is_file()


def test_docs_need_a_token_when_reads_do(module_db: str) -> None:
    server = start_server(module_db, env={**LIVE_ENV, "TOOLREG_READS_REQUIRE_TOKEN": "true"})
    try:
        reader = asyncio.run(server.token("read"))
        assert httpx.get(server.base_url + "/docs").status_code == 401
        assert httpx.get(server.base_url + "/docs", headers=_bearer(reader)).status_code == 200
        assert httpx.get(server.base_url + "/docs/static/swagger-ui.css").status_code == 200
        assert httpx.post(server.base_url + "/v1/console/tools", json={}).status_code == 401
        # The page shells hold no registry data: open, they ask for a token in the browser.
        assert 'data-reads-require-token="true"' in httpx.get(server.base_url + "/ui/").text
    finally:
        stop_server(server)
