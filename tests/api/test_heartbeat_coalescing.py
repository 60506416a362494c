"""``POST /v1/tools/{id}/heartbeat`` coalesced (TOOLREG_HEARTBEAT_BATCH_WINDOW_MS): 204 only
once durable, the same answers as one statement per request, and outages."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support import (
    Server,
    assert_problem,
    bearer,
    connection,
    metric_value,
    running_server,
    start_server,
    stop_server,
    tool_body,
)

WINDOW_MS = "50"  # wide, so that a test's concurrent requests surely share batches


@pytest.fixture(scope="module")
def batched(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env={"TOOLREG_HEARTBEAT_BATCH_WINDOW_MS": WINDOW_MS}) as s:
        yield s


@pytest.fixture(scope="module")
def single(module_db: str) -> Iterator[Server]:
    """The same database served with one statement per heartbeat (coalescing off)."""
    with running_server(module_db, env={"TOOLREG_HEARTBEAT_BATCH_WINDOW_MS": "0"}) as s:
        yield s


async def register(server: Server, secret: str, *tool_ids: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for tool_id in tool_ids:
            response = await http.post("/v1/tools", json=tool_body(tool_id), headers=bearer(secret))
            assert response.status_code == 201, response.text


async def seen_elsewhere(dsn: str, tool_ids: list[str]) -> dict[str, datetime]:
    """last_heartbeat as another connection sees it."""
    async with connection(dsn) as conn:
        rows = await conn.fetch(
            "SELECT tool_id, last_heartbeat FROM tool_registrations WHERE tool_id = ANY($1)",
            tool_ids,
        )
    return {row["tool_id"]: row["last_heartbeat"] for row in rows}


async def db_now(dsn: str) -> datetime:
    async with connection(dsn) as conn:
        value: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return value


async def registered(server: Server, *tool_ids: str) -> tuple[str, datetime]:
    """A new write token's secret that has registered ``tool_ids``, and the database's clock
    just after: a later heartbeat of theirs is later than that."""
    writer = await server.token("write")
    await register(server, writer, *tool_ids)
    return writer, await db_now(server.dsn)


def heartbeats_counted(metrics: str) -> float:
    counted = metric_value(metrics, "toolreg_heartbeats_received_total")
    assert counted is not None
    return counted


async def test_every_204_is_durable_when_it_arrives(batched: Server, uid: str) -> None:
    ids = [f"dur-{uid}-{i}" for i in range(60)]
    writer, start = await registered(batched, *ids)
    limits = httpx.Limits(max_connections=len(ids))
    async with httpx.AsyncClient(base_url=batched.base_url, timeout=30, limits=limits) as http:
        counted = heartbeats_counted((await http.get("/metrics")).text)

        async def beat(tool_id: str) -> datetime:
            response = await http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
            assert response.status_code == 204, response.text
            # Read at once on another connection: the heartbeat is already there.
            return (await seen_elsewhere(batched.dsn, [tool_id]))[tool_id]

        seen = await asyncio.gather(*(beat(tool_id) for tool_id in ids))
        assert all(when > start for when in seen)
        metrics = (await http.get("/metrics")).text
    assert heartbeats_counted(metrics) - counted == len(ids)
    # Counted under the route's template, as every other route's requests are.
    assert re.search(
        r'^toolreg_http_requests_total\{method="POST",route="/v1/tools/\{tool_id\}/heartbeat",'
        r'status="204"\} [1-9]',
        metrics,
        re.MULTILINE,
    )


async def test_many_clients_on_one_tool_all_land(batched: Server, uid: str) -> None:
    tool_id = f"same-{uid}"
    writer, start = await registered(batched, tool_id)
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=batched.base_url, timeout=30, limits=limits) as http:
        responses = await asyncio.gather(
            *(
                http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
                for _ in range(200)
            )
        )
    assert [r.status_code for r in responses] == [204] * 200
    assert (await seen_elsewhere(batched.dsn, [tool_id]))[tool_id] > start


def _answer(response: httpx.Response) -> tuple[int, Any]:
    """What a client can tell apart: the status and, for a problem, its type, title and detail."""
    if response.status_code == 204:
        return 204, None
    problem = assert_problem(response, response.status_code)
    return response.status_code, (problem["type"], problem["title"], problem.get("detail"))


async def test_mixed_owners_in_one_window_get_the_answers_of_the_single_path(
    batched: Server, single: Server, uid: str
) -> None:
    alice, bob = await batched.token("write"), await batched.token("write")
    admin, reader = await batched.token("admin"), await batched.token("read")
    await register(batched, alice, f"a1-{uid}", f"a2-{uid}")
    await register(batched, bob, f"b1-{uid}", f"b2-{uid}")
    before = await seen_elsewhere(batched.dsn, [f"b2-{uid}"])
    requests: list[tuple[str | None, str]] = [
        (alice, f"a1-{uid}"),
        (alice, f"b2-{uid}"),  # bob's tool: 403, and it stays untouched
        (bob, f"b1-{uid}"),
        (alice, f"a1-{uid}"),  # a duplicate
        (admin, f"a2-{uid}"),
        (reader, f"b1-{uid}"),  # read scope: 403
        (alice, f"ghost-{uid}"),  # 404
        ("trg_" + "x" * 43, f"a1-{uid}"),  # unknown token: 401
        ("not-a-token", f"a1-{uid}"),  # 401
        (None, f"a1-{uid}"),  # no token: 401
        (bob, f"a1-{uid}"),  # bob on alice's tool, beaten by alice in this batch: 403
        (alice, f"bad id {uid}"),  # 422, before any token is looked at
    ]

    async def answers(server: Server) -> list[tuple[int, Any]]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"/v1/tools/{tool_id}/heartbeat",
                        headers=bearer(secret) if secret is not None else {},
                    )
                    for secret, tool_id in requests
                )
            )
        return [_answer(response) for response in responses]

    got = await answers(batched)
    statuses = [status for status, _ in got]
    assert statuses == [204, 403, 204, 204, 204, 403, 404, 401, 401, 401, 403, 422]
    assert got == await answers(single)
    assert (await seen_elsewhere(batched.dsn, [f"b2-{uid}"])) == before


async def test_a_heartbeat_moving_backwards_is_rewound_as_on_the_single_path(
    batched: Server, uid: str
) -> None:
    writer = await batched.token("write")
    tool_id = f"ahead-{uid}"
    await register(batched, writer, tool_id)
    async with connection(batched.dsn) as conn:
        await conn.execute(
            "UPDATE tool_registrations SET last_heartbeat = now() + interval '30 seconds' "
            "WHERE tool_id = $1",
            tool_id,
        )
        async with httpx.AsyncClient(base_url=batched.base_url, timeout=30) as http:
            response = await http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
        assert response.status_code == 204, response.text
        row = await conn.fetchrow(
            "SELECT r.last_heartbeat <= now() AS back, w.rewound_at IS NOT NULL AS recorded "
            "FROM tool_registrations r LEFT JOIN heartbeat_rewinds w USING (tool_id) "
            "WHERE r.tool_id = $1",
            tool_id,
        )
    assert row is not None and row["back"] and row["recorded"]


async def test_backends_killed_under_load_give_503_then_it_recovers(
    batched: Server, uid: str
) -> None:
    writer = await batched.token("write")
    ids = [f"kill-{uid}-{i}" for i in range(40)]
    await register(batched, writer, *ids)
    statuses: list[int] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=len(ids))
    async with httpx.AsyncClient(base_url=batched.base_url, timeout=30, limits=limits) as http:

        async def client(tool_id: str) -> None:
            while not stop.is_set():
                response = await http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
                if response.status_code != 204:
                    assert_problem(response, 503)
                statuses.append(response.status_code)

        clients = [asyncio.create_task(client(tool_id)) for tool_id in ids]
        async with connection(batched.dsn) as admin:
            for _ in range(5):  # the server's connections die under it, again and again
                await asyncio.sleep(0.2)
                await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 60)  # nobody hangs

        start = await db_now(batched.dsn)
        final: list[int] = []
        for _ in range(5):  # dead pooled connections may fail once more each
            final = [
                r.status_code
                for r in await asyncio.gather(
                    *(
                        http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
                        for tool_id in ids
                    )
                )
            ]
            if final == [204] * len(ids):
                break
    assert set(statuses) <= {204, 503} and statuses.count(204) > 0
    assert final == [204] * len(ids)
    seen = await seen_elsewhere(batched.dsn, ids)
    assert all(seen[tool_id] > start for tool_id in ids)


async def test_heartbeats_pending_at_shutdown_are_written_and_answered(
    module_db: str, uid: str
) -> None:
    # A wide window: the requests are still waiting in it when SIGTERM arrives.
    server = start_server(module_db, env={"TOOLREG_HEARTBEAT_BATCH_WINDOW_MS": "500"})
    try:
        ids = [f"down-{uid}-{i}" for i in range(20)]
        writer, start = await registered(server, *ids)
        limits = httpx.Limits(max_connections=len(ids))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as http:
            beats = [
                asyncio.create_task(
                    http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(writer))
                )
                for tool_id in ids
            ]
            await asyncio.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            responses = await asyncio.wait_for(asyncio.gather(*beats), 30)
        assert [r.status_code for r in responses] == [204] * len(ids)
        await asyncio.to_thread(server.process.wait, 30)  # it ends: nothing hangs
    finally:
        stop_server(server)
    seen = await seen_elsewhere(server.dsn, ids)
    assert all(seen[tool_id] > start for tool_id in ids)


async def _revoked_elsewhere_then_beat(server: Server, label: str) -> httpx.Response:
    """A token checked a moment ago (so in the server's cache), revoked behind the server's
    back as another replica or the CLI would, then used for a heartbeat."""
    name = f"gone-{label}"
    secret = await server.token("write", name=name)
    tool_id = f"hb-{name}"
    await register(server, secret, tool_id)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        assert (await http.get("/v1/tokens/me", headers=bearer(secret))).status_code == 200
        async with connection(server.dsn) as conn:
            await conn.execute(
                "UPDATE registry_tokens SET revoked_at = now() WHERE name = $1", name
            )
        return await http.post(f"/v1/tools/{tool_id}/heartbeat", headers=bearer(secret))


async def test_a_token_revoked_elsewhere_is_refused_at_once_when_batched(
    batched: Server, uid: str
) -> None:
    """The batch's statement refuses it; the error path checks it afresh, not from the
    server's one-second cache of checked tokens (TOOLREG_TOKEN_CACHE_SECONDS)."""
    assert_problem(await _revoked_elsewhere_then_beat(batched, f"b-{uid}"), 401)


async def test_a_token_revoked_elsewhere_is_refused_at_once_when_single(
    single: Server, uid: str
) -> None:
    assert_problem(await _revoked_elsewhere_then_beat(single, f"s-{uid}"), 401)
