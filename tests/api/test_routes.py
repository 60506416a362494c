"""Every route of a real server process: success and error codes, problem+json everywhere."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx

from tests.support import Server, assert_problem, bearer, start_server, tool_body


async def test_health_ready_openapi_docs_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok", "detail": None}
    ready = await http.get("/ready")
    assert ready.status_code == 200
    detail = ready.json()["detail"]
    assert detail["database"] == "ok" and detail["change_feed"] == "following"
    # Open to anyone: no host, socket path or server version.
    assert set(detail) == {
        "database",
        "latency_ms",
        "change_feed",
        "discovery_index",
        "discovery_index_stale_seconds",
    }
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/v1/tools",
        "/v1/tools/{tool_id}",
        "/v1/tools/{tool_id}/heartbeat",
        "/v1/heartbeats",
        "/v1/tools/search",
        "/v1/changes",
    ):
        assert path in spec["paths"], path
    assert "swagger" in (await http.get("/docs")).text.lower()
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert "toolreg_http_requests_total" in metrics.text
    assert "toolreg_db_pool_connections" in metrics.text


async def test_create_get_patch_put_delete(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    token = bearer(await server.token("write"))
    tool_id = f"crud-{uid}"
    created = await http.post("/v1/tools", json=tool_body(tool_id), headers=token)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/tools/{tool_id}"
    stored = created.json()
    assert stored["id"] and stored["last_heartbeat"]
    assert_problem(await http.post("/v1/tools", json=tool_body(tool_id), headers=token), 409)

    fetched = (await http.get(f"/v1/tools/{tool_id}")).json()
    assert fetched.pop("health")["status"] == "healthy"  # GET adds the health now
    assert fetched == stored

    patched = await http.patch(
        f"/v1/tools/{tool_id}", json={"metadata": {"version": "1.1.0"}}, headers=token
    )
    assert patched.status_code == 200
    assert patched.json()["metadata"] == {"version": "1.1.0"}
    assert patched.json()["capabilities"] == stored["capabilities"]

    replaced = await http.put(
        f"/v1/tools/{tool_id}", json=tool_body(tool_id, node_type="compute"), headers=token
    )
    assert replaced.status_code == 200
    assert replaced.json()["node_type"] == "compute"
    assert replaced.json()["id"] == stored["id"]
    fresh = await http.put(f"/v1/tools/{tool_id}-b", json=tool_body(f"{tool_id}-b"), headers=token)
    assert fresh.status_code == 201
    mismatch = await http.put(f"/v1/tools/{tool_id}-c", json=tool_body("other"), headers=token)
    assert "tool_id" in [e["field"] for e in assert_problem(mismatch, 422)["errors"]]

    assert (await http.delete(f"/v1/tools/{tool_id}", headers=token)).status_code == 204
    assert_problem(await http.delete(f"/v1/tools/{tool_id}", headers=token), 404)
    assert_problem(await http.get(f"/v1/tools/{tool_id}"), 404)
    assert_problem(await http.patch(f"/v1/tools/{tool_id}", json={}, headers=token), 404)


async def test_heartbeats(http: httpx.AsyncClient, server: Server, uid: str) -> None:
    token = bearer(await server.token("write"))
    ids = [f"hb-{uid}-{i}" for i in range(3)]
    for tool_id in ids:
        assert (
            await http.post("/v1/tools", json=tool_body(tool_id), headers=token)
        ).status_code == 201
    before = (await http.get(f"/v1/tools/{ids[0]}")).json()["last_heartbeat"]
    await asyncio.sleep(0.01)
    assert (await http.post(f"/v1/tools/{ids[0]}/heartbeat", headers=token)).status_code == 204
    assert (await http.get(f"/v1/tools/{ids[0]}")).json()["last_heartbeat"] > before
    assert_problem(await http.post(f"/v1/tools/ghost-{uid}/heartbeat", headers=token), 404)
    batch = await http.post(
        "/v1/heartbeats", json={"tool_ids": [*ids, f"ghost-{uid}"]}, headers=token
    )
    assert batch.json() == {"updated": 3, "unknown": [f"ghost-{uid}"]}
    assert_problem(await http.post("/v1/heartbeats", json={"tool_ids": []}, headers=token), 422)


async def test_search_and_list(http: httpx.AsyncClient, server: Server, uid: str) -> None:
    token = bearer(await server.token("write"))
    caps = [
        ("big", 20_000_000, ["stamp"]),
        ("small", 1000, ["stamp"]),
        ("other", 50_000_000, ["hash"]),
    ]
    for name, size, ops in caps:
        payload = tool_body(
            f"s-{uid}-{name}", capabilities={"operations": ops, "max_file_size": size, "tag": uid}
        )
        assert (await http.post("/v1/tools", json=payload, headers=token)).status_code == 201
    found = await http.post(
        "/v1/tools/search",
        json={
            "capabilities": {"operations": ["stamp"], "tag": uid},
            "where": "$.max_file_size >= 5000000",
        },
    )
    assert [t["tool_id"] for t in found.json()["items"]] == [f"s-{uid}-big"]
    assert found.json()["next_cursor"] is None
    healthy = await http.post(
        "/v1/tools/search",
        json={"capabilities": {"tag": uid}, "healthy_within_seconds": 60, "node_type": "effect"},
    )
    assert len(healthy.json()["items"]) == 3
    bad_path = await http.post("/v1/tools/search", json={"where": "$.x >>> 1"})
    assert "where" in [e["field"] for e in assert_problem(bad_path, 422)["errors"]]
    assert_problem(await http.post("/v1/tools/search", json={"limit": 0}), 422)
    assert_problem(await http.post("/v1/tools/search", json={"unknown": 1}), 422)
    assert_problem(await http.get("/v1/tools", params={"cursor": "garbage"}), 422)
    assert_problem(await http.get("/v1/tools", params={"node_type": "gateway"}), 422)
    listed = await http.get("/v1/tools", params={"node_type": "effect", "limit": 1000})
    assert {f"s-{uid}-big", f"s-{uid}-small"} <= {t["tool_id"] for t in listed.json()["items"]}


async def test_validation_names_every_field(http: httpx.AsyncClient, server: Server) -> None:
    token = bearer(await server.token("write"))
    bad = tool_body(
        "bad id", node_type="gateway", endpoints={"stamp": "javascript:alert(1)"}, capabilities=[1]
    )
    problem = assert_problem(await http.post("/v1/tools", json=bad, headers=token), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"tool_id", "node_type", "endpoints.stamp", "capabilities"} <= fields


async def test_malformed_json_and_oversized_bodies(http: httpx.AsyncClient, server: Server) -> None:
    token = bearer(await server.token("write"))
    malformed = await http.post(
        "/v1/tools", content=b"{not json", headers={**token, "content-type": "application/json"}
    )
    assert_problem(malformed, 400)
    huge = (
        b'{"tool_id": "x", "node_type": "effect", "metadata": {"a": "'
        + b"x" * (2 * 1024 * 1024)
        + b'"}}'
    )
    assert_problem(
        await http.post(
            "/v1/tools", content=huge, headers={**token, "content-type": "application/json"}
        ),
        413,
    )

    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    streamed = await http.post(
        "/v1/tools", content=chunks(), headers={**token, "content-type": "application/json"}
    )
    assert_problem(streamed, 413)


async def test_unknown_routes_and_methods_are_problems(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get("/v2/nothing"), 404)
    assert_problem(await http.delete("/health"), 405)
    assert_problem(await http.get("/v1/tools/bad%20id"), 422)


async def test_two_hundred_parallel_creates(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    token = bearer(await server.token("write"))
    ids = [f"par-{uid}-{i:03d}" for i in range(200)]
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/tools", json=tool_body(i), headers=token) for i in ids)
        )
    assert [r.status_code for r in responses] == [201] * 200
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 37}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/v1/tools", params=params)).json()
        seen.extend(t["tool_id"] for t in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a tool was visited twice"
    assert set(ids) <= set(seen)


async def test_sigterm_drains_and_ends_streams(module_db: str, uid: str) -> None:
    running = start_server(module_db)
    token = bearer(await running.token("write"))
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=running.base_url, timeout=30) as client,
        client.stream("GET", "/v1/changes") as stream,
    ):
        burst = [
            asyncio.ensure_future(
                client.post("/v1/tools", json=tool_body(f"drain-{uid}-{i}"), headers=token)
            )
            for i in range(20)
        ]
        await asyncio.sleep(0.05)
        started = loop.time()
        running.process.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*burst, return_exceptions=True)
        # The open event stream ends instead of holding the shutdown for its full timeout.
        async for _ in stream.aiter_lines():
            pass
        assert loop.time() - started < 10
    code = await asyncio.to_thread(running.process.wait, 30)
    assert code in (0, -signal.SIGTERM)
    statuses = [r.status_code for r in responses if isinstance(r, httpx.Response)]
    # Every request that reached the server before it stopped accepting was answered in full.
    assert all(s == 201 for s in statuses)
    assert statuses, "no request reached the server before shutdown"
    running.log.close()


async def test_discover_routes_to_a_live_tool(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    token = bearer(await server.token("write"))
    operation = f"op-{uid}"
    assert_problem(await http.get(f"/v1/discover/{operation}"), 404)
    payload = tool_body(
        f"disc-{uid}",
        capabilities={"operations": [operation]},
        endpoints={operation: "http://127.0.0.1:9/run"},
    )
    assert (await http.post("/v1/tools", json=payload, headers=token)).status_code == 201
    found = None
    for _ in range(40):  # the index follows the change feed: typically milliseconds
        response = await http.get(f"/v1/discover/{operation}")
        if response.status_code == 200:
            found = response.json()
            break
        await asyncio.sleep(0.05)
    assert found is not None
    assert found["tool_id"] == f"disc-{uid}"
    assert (await http.delete(f"/v1/tools/disc-{uid}", headers=token)).status_code == 204
    gone = None
    for _ in range(40):
        gone = await http.get(f"/v1/discover/{operation}")
        if gone.status_code == 404:
            break
        await asyncio.sleep(0.05)
    assert gone is not None
    assert_problem(gone, 404)
    assert_problem(await http.get("/v1/discover/bad%20op"), 422)
