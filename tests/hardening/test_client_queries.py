"""Queries a client shapes cannot stall the server: a time limit, bounded slots, a 4xx.

A catastrophic SQL/JSON regular expression used to run for the command
timeout (30 s) and answer 503 "database unavailable" with Retry-After; twenty
at once held plain reads for 28 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Server, bearer, running_server, tool_body

# Backtracking that grows with the cube of the string: minutes without a limit.
PATHOLOGICAL = '$ ? ("' + "a" * 2000 + 'c" like_regex "^(.*)(.*)\\\\2\\\\1$")'


@pytest.fixture(scope="module")
def limited(module_db: str) -> Iterator[Server]:
    """A server with a 1 s query limit, 2 search slots and a 1 s wait for one."""
    env = {
        "TOOLREG_QUERY_TIMEOUT_SECONDS": "1",
        "TOOLREG_SEARCH_CONCURRENCY": "2",
        "TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS": "1",
    }
    with running_server(module_db, env=env) as running:
        yield running


async def _seed(http: httpx.AsyncClient, server: Server, tool_id: str) -> dict[str, str]:
    token = bearer(await server.token("write"))
    response = await http.put(f"/v1/tools/{tool_id}", json=tool_body(tool_id), headers=token)
    assert response.status_code in (200, 201), response.text
    return token


async def test_a_pathological_search_is_a_4xx_naming_the_limit(limited: Server) -> None:
    async with httpx.AsyncClient(base_url=limited.base_url, timeout=60) as http:
        await _seed(http, limited, "seed-1")
        response = await http.post("/v1/tools/search", json={"where": PATHOLOGICAL})
        assert response.status_code == 422, response.text
        assert "retry-after" not in response.headers
        problem = response.json()
        assert problem["title"] == "Query too expensive"
        assert "TOOLREG_QUERY_TIMEOUT_SECONDS" in problem["detail"]
        assert "unavailable" not in problem["detail"]
        # The server is fine afterwards.
        assert (await http.get("/v1/tools/seed-1")).status_code == 200


async def test_twenty_pathological_searches_leave_point_reads_and_writes_alone(
    limited: Server,
) -> None:
    async with (
        httpx.AsyncClient(base_url=limited.base_url, timeout=60) as attacker,
        httpx.AsyncClient(base_url=limited.base_url, timeout=60) as user,
    ):
        token = await _seed(user, limited, "seed-2")
        attack = asyncio.gather(
            *(attacker.post("/v1/tools/search", json={"where": PATHOLOGICAL}) for _ in range(20))
        )
        await asyncio.sleep(0.3)  # the searches hold their slots now
        reads = []
        for _ in range(20):  # plain reads and heartbeats all answer while the attack runs
            reads.append(await user.get("/v1/tools/seed-2"))
            reads.append(await user.post("/v1/tools/seed-2/heartbeat", headers=token))
        attacked = await attack
        assert [r.status_code for r in reads] == [200, 204] * 20
        statuses = {r.status_code for r in attacked}
        # 2 slots, 1 s each, 1 s to wait for one: some time out (422), the rest
        # are told the registry is overloaded (503) rather than queueing for long.
        assert statuses <= {422, 503}, [r.text for r in attacked]
        assert 422 in statuses and 503 in statuses
        for response in attacked:
            if response.status_code == 503:
                assert "overloaded" in response.json()["detail"]
                assert response.headers["retry-after"].isdigit()
