"""The read routes' JSON, built by PostgreSQL: exactly what the models would write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.support import Server, base_settings, bearer, tool_body


@pytest.fixture
async def repository(server: Server) -> AsyncIterator[ToolRegistrationRepository]:
    """The repository on the server's database: the models' side of the comparison."""
    settings = base_settings(pool_max_size=1)
    async with PostgresClient(settings, dsn=server.dsn) as client:
        yield ToolRegistrationRepository(client)


async def _register(http: httpx.AsyncClient, server: Server, ids: list[str], tag: str) -> None:
    token = bearer(await server.token("write"))
    for tool_id in ids:
        payload = tool_body(
            tool_id,
            capabilities={"operations": ["stamp"], "tag": tag, "nested": {"é": [1.5, None, True]}},
            metadata={"note": 'quotes " and \\ and ünïcode', "n": 12345678901234},
            health_endpoint=None,  # no active checks: the test sets the verdict itself
        )
        assert (await http.post("/v1/tools", json=payload, headers=token)).status_code == 201


async def _models_json(repository: ToolRegistrationRepository, ids: list[str]) -> list[Any]:
    return [m.model_dump(mode="json") for m in await repository.get_registrations(ids)]


async def test_get_list_and_search_write_what_the_models_write(
    http: httpx.AsyncClient, server: Server, repository: ToolRegistrationRepository, uid: str
) -> None:
    ids = [f"json-{uid}-{i}" for i in range(3)]
    await _register(http, server, ids, uid)
    client = repository.client
    # Timestamps pydantic writes without a fraction (0 µs), with one, and none at all.
    await client.execute(
        "UPDATE tool_registrations SET registered_at = '2026-01-02 03:04:05+00',"
        " updated_at = '2026-01-02 03:04:05.5+00', last_heartbeat = NULL WHERE tool_id = $1",
        ids[0],
    )
    expected = await _models_json(repository, ids)

    listed = await http.get("/v1/tools", params={"limit": 1000})
    assert listed.headers["content-type"] == "application/json"
    assert [t for t in listed.json()["items"] if t["tool_id"] in ids] == expected
    assert '"registered_at":"2026-01-02T03:04:05Z"' in listed.text
    assert '"updated_at":"2026-01-02T03:04:05.500000Z"' in listed.text
    assert '"last_heartbeat":null' in listed.text

    found = await http.post("/v1/tools/search", json={"capabilities": {"tag": uid}})
    assert found.json() == {"items": expected, "next_cursor": None}
    assert list(found.json()["items"][0]) == list(expected[0])  # the fields in the model's order

    for tool_id, model in zip(ids, expected, strict=True):
        one = (await http.get(f"/v1/tools/{tool_id}")).json()
        one.pop("health")
        assert one == model


async def test_pages_and_cursors_match_the_repository(
    http: httpx.AsyncClient, server: Server, repository: ToolRegistrationRepository, uid: str
) -> None:
    ids = [f"page-{uid}-{i}" for i in range(5)]
    await _register(http, server, ids, uid)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        request: dict[str, Any] = {"capabilities": {"tag": uid}, "limit": 2}
        if cursor is not None:
            request["cursor"] = cursor
        page = (await http.post("/v1/tools/search", json=request)).json()
        model_page = await repository.find_tools(capabilities={"tag": uid}, limit=2, cursor=cursor)
        assert page == model_page.model_dump(mode="json")
        seen += [t["tool_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids  # each exactly once, in tool_id order; the last page is not full

    # A page that ends exactly at the last tool has no next page.
    exact = await http.post("/v1/tools/search", json={"capabilities": {"tag": uid}, "limit": 5})
    assert exact.json()["next_cursor"] is None
    assert (
        await http.post("/v1/tools/search", json={"capabilities": {"tag": "none-" + uid}})
    ).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_get_one_tells_the_health_the_model_derives(
    http: httpx.AsyncClient, server: Server, repository: ToolRegistrationRepository, uid: str
) -> None:
    healthy, stale, critical, passing = (f"health-{uid}-{n}" for n in ("a", "b", "c", "d"))
    await _register(http, server, [healthy, stale, critical, passing], uid)
    client = repository.client
    await client.execute(
        "UPDATE tool_registrations SET last_heartbeat = now() - interval '1 day'"
        " WHERE tool_id = $1",
        stale,
    )
    await client.execute(
        "INSERT INTO tool_health (tool_id, check_status, last_checked_at, check_changed_at)"
        " VALUES ($1, 'critical', '2026-01-02 03:04:06+00', '2026-01-02 03:04:05.25+00'),"
        "        ($2, 'passing', '2026-01-02 03:04:06.000001+00', NULL)"
        " ON CONFLICT (tool_id) DO UPDATE SET check_status = EXCLUDED.check_status,"
        "   last_checked_at = EXCLUDED.last_checked_at,"
        "   check_changed_at = EXCLUDED.check_changed_at",
        critical,
        passing,
    )
    expected = {
        healthy: {
            "status": "healthy",
            "heartbeat_fresh": True,
            "check_status": "unknown",
            "check_since": None,
            "last_checked_at": None,
        },
        stale: {
            "status": "stale",
            "heartbeat_fresh": False,
            "check_status": "unknown",
            "check_since": None,
            "last_checked_at": None,
        },
        critical: {
            "status": "critical",
            "heartbeat_fresh": True,
            "check_status": "critical",
            "check_since": "2026-01-02T03:04:05.250000Z",
            "last_checked_at": "2026-01-02T03:04:06Z",
        },
        passing: {
            "status": "healthy",
            "heartbeat_fresh": True,
            "check_status": "passing",
            "check_since": None,
            "last_checked_at": "2026-01-02T03:04:06.000001Z",
        },
    }
    for tool_id, health in expected.items():
        answer = (await http.get(f"/v1/tools/{tool_id}")).json()
        assert answer["health"] == health, tool_id
        # The repository's model reads the same JSON back into the same values.
        model = await repository.get_registration_with_health(tool_id, 300.0)
        assert model is not None
        assert model.model_dump(mode="json") == answer
