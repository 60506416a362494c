"""Errors that explain themselves: media type, JSON position, allowed methods, one wording."""

from __future__ import annotations

import httpx

from omninode_bridge.errors import ToolAlreadyRegisteredError, ToolNotFoundError
from omninode_bridge.problem_types import PROBLEM_TYPES, error_from_problem
from tests.support import Server, bearer, tool_body


async def test_a_body_that_is_not_json_is_a_415_naming_the_type(
    http: httpx.AsyncClient, server: Server
) -> None:
    token = bearer(await server.token("write"))
    response = await http.post("/v1/tools", content=b"tool_id=x", headers=token)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    form = await http.post(
        "/v1/tools/search", content=b"a=b", headers={"content-type": "text/plain"}
    )
    assert form.status_code == 415 and "text/plain" in form.json()["detail"]


async def test_malformed_json_says_where(http: httpx.AsyncClient, server: Server) -> None:
    token = bearer(await server.token("write"))
    response = await http.post(
        "/v1/tools",
        content=b'{\n  "tool_id": "x",\n  "node_type": effect\n}',
        headers={**token, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "line 3, column 16" in response.json()["detail"], response.text


async def test_405_names_the_allowed_methods(http: httpx.AsyncClient) -> None:
    response = await http.request("PATCH", "/v1/tools")
    assert response.status_code == 405
    detail = response.json()["detail"]
    assert "PATCH is not allowed" in detail and "GET" in detail and "POST" in detail


async def test_every_422_is_worded_alike(http: httpx.AsyncClient, server: Server, uid: str) -> None:
    token = bearer(await server.token("write"))
    from_pydantic = await http.post(
        "/v1/tools", json=tool_body(f"w-{uid}", node_type="nope"), headers=token
    )
    from_service = await http.post("/v1/tools/search", json={"where": "$$$ nonsense"})
    for response in (from_pydantic, from_service):
        assert response.status_code == 422, response.text
        problem = response.json()
        first = problem["errors"][0]
        assert problem["detail"].startswith(f"{first['field']}: "), problem["detail"]
        assert "invalid input" not in problem["detail"]


async def test_the_client_rebuilds_the_servers_errors_from_one_table(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    token = bearer(await server.token("write"))
    tool_id = f"table-{uid}"
    assert (await http.post("/v1/tools", json=tool_body(tool_id), headers=token)).status_code == 201
    again = await http.post("/v1/tools", json=tool_body(tool_id), headers=token)
    rebuilt = error_from_problem(again.status_code, again.json())
    assert isinstance(rebuilt, ToolAlreadyRegisteredError) and rebuilt.tool_ids == [tool_id]
    missing = await http.get(f"/v1/tools/gone-{uid}")
    rebuilt_missing = error_from_problem(missing.status_code, missing.json())
    assert isinstance(rebuilt_missing, ToolNotFoundError)
    assert rebuilt_missing.tool_id == f"gone-{uid}"
    assert len({row.slug for row in PROBLEM_TYPES}) == len(PROBLEM_TYPES)
