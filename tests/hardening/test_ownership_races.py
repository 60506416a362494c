"""Ownership under concurrency: two tokens racing on one id, against a real server process.

Exactly one of two racing tokens wins; the loser gets 403 (409 for a POST that
lost to a create); the stored content is always the owner's. Every write that
involves an owner checks it in the same statement as the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support import Server, bearer, tool_body

PAIRS = 40


async def _tokens(server: Server) -> tuple[dict[str, str], dict[str, str]]:
    return bearer(await server.token("write")), bearer(await server.token("write"))


@asynccontextmanager
async def _racers(
    server: Server,
) -> AsyncIterator[tuple[dict[str, dict[str, str]], httpx.AsyncClient, httpx.AsyncClient]]:
    """The headers of two write tokens, ``"a"`` and ``"b"``, and two clients of their own
    (separate connections) to race with."""
    tokens = dict(zip("ab", await _tokens(server), strict=True))
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as one,
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as two,
    ):
        yield tokens, one, two


def _by(tool_id: str, who: str) -> dict[str, Any]:
    return tool_body(tool_id, metadata={"by": who})


async def _settle(http: httpx.AsyncClient, tool_id: str, results: dict[str, httpx.Response]) -> str:
    """The single winner of a race; asserts the loser's status and the stored content."""
    winners = [who for who, r in results.items() if r.status_code in (200, 201)]
    assert len(winners) == 1, {w: (r.status_code, r.text) for w, r in results.items()}
    winner = winners[0]
    for who, response in results.items():
        if who != winner:
            assert response.status_code in (403, 409), response.text
    stored = (await http.get(f"/v1/tools/{tool_id}")).json()
    assert stored["metadata"] == {"by": winner}, (tool_id, winner, stored["metadata"])
    return winner


async def test_put_racing_put_on_a_new_id_has_one_winner_who_owns_it(
    server: Server, uid: str
) -> None:
    async with _racers(server) as (tokens, one, two):
        ids = [f"race-put-{uid}-{i}" for i in range(PAIRS)]
        responses = await asyncio.gather(
            *(
                client.put(f"/v1/tools/{tool_id}", json=_by(tool_id, who), headers=tokens[who])
                for tool_id in ids
                for client, who in ((one, "a"), (two, "b"))
            )
        )
        for index, tool_id in enumerate(ids):
            pair = {"a": responses[2 * index], "b": responses[2 * index + 1]}
            winner = await _settle(one, tool_id, pair)
            loser = "b" if winner == "a" else "a"
            # The owner is the winner: it may replace, the loser may not.
            again = await one.put(
                f"/v1/tools/{tool_id}", json=_by(tool_id, winner), headers=tokens[winner]
            )
            assert again.status_code == 200, again.text
            denied = await two.put(
                f"/v1/tools/{tool_id}", json=_by(tool_id, loser), headers=tokens[loser]
            )
            assert denied.status_code == 403, denied.text


async def test_post_racing_put_on_a_new_id_has_one_winner(server: Server, uid: str) -> None:
    async with _racers(server) as (tokens, one, two):
        ids = [f"race-post-{uid}-{i}" for i in range(PAIRS)]
        responses = await asyncio.gather(
            *(
                request
                for tool_id in ids
                for request in (
                    one.post("/v1/tools", json=_by(tool_id, "a"), headers=tokens["a"]),
                    two.put(f"/v1/tools/{tool_id}", json=_by(tool_id, "b"), headers=tokens["b"]),
                )
            )
        )
        for index, tool_id in enumerate(ids):
            post, put = responses[2 * index], responses[2 * index + 1]
            winner = await _settle(one, tool_id, {"a": post, "b": put})
            if winner == "b":
                assert post.status_code == 409  # the POST lost to a create
            else:
                assert put.status_code == 403


async def test_one_token_racing_itself_on_a_new_id_never_gets_403(server: Server, uid: str) -> None:
    token = bearer(await server.token("write"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        ids = [f"self-race-{uid}-{i}" for i in range(PAIRS)]
        responses = await asyncio.gather(
            *(
                http.put(f"/v1/tools/{tool_id}", json=_by(tool_id, "a"), headers=token)
                for tool_id in ids
                for _ in range(2)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * PAIRS + [201] * PAIRS, [r.text for r in responses]


async def test_non_owner_writes_are_refused_and_change_nothing(server: Server, uid: str) -> None:
    owner, other = await _tokens(server)
    tool_id = f"owned-{uid}"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        assert (await http.post("/v1/tools", json=_by(tool_id, "a"), headers=owner)).is_success
        before = (await http.get(f"/v1/tools/{tool_id}")).json()
        attempts = [
            http.patch(f"/v1/tools/{tool_id}", json={"metadata": {"by": "b"}}, headers=other),
            http.put(f"/v1/tools/{tool_id}", json=_by(tool_id, "b"), headers=other),
            http.delete(f"/v1/tools/{tool_id}", headers=other),
            http.post(f"/v1/tools/{tool_id}/heartbeat", headers=other),
            http.post("/v1/heartbeats", json={"tool_ids": [tool_id]}, headers=other),
        ]
        for response in await asyncio.gather(*attempts):
            assert response.status_code == 403, response.text
        after = (await http.get(f"/v1/tools/{tool_id}")).json()
        assert after == before  # content, heartbeat and all
        missing = await http.patch(f"/v1/tools/nothing-{uid}", json={"metadata": {}}, headers=other)
        assert missing.status_code == 404


async def test_batch_heartbeat_with_one_foreign_id_writes_nothing(server: Server, uid: str) -> None:
    mine, theirs = await _tokens(server)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for tool_id, token in ((f"m-{uid}", mine), (f"t-{uid}", theirs)):
            assert (await http.post("/v1/tools", json=tool_body(tool_id), headers=token)).is_success
        before = (await http.get(f"/v1/tools/m-{uid}")).json()["last_heartbeat"]
        await asyncio.sleep(0.01)
        denied = await http.post(
            "/v1/heartbeats", json={"tool_ids": [f"m-{uid}", f"t-{uid}"]}, headers=mine
        )
        assert denied.status_code == 403 and f"t-{uid}" in denied.text
        assert (await http.get(f"/v1/tools/m-{uid}")).json()["last_heartbeat"] == before
        ok = await http.post(
            "/v1/heartbeats", json={"tool_ids": [f"m-{uid}", f"gone-{uid}"]}, headers=mine
        )
        assert ok.json() == {"updated": 1, "unknown": [f"gone-{uid}"]}


async def test_one_token_racing_itself_on_one_id_is_never_refused(server: Server, uid: str) -> None:
    """Creates and deletes of one id by its only writer, concurrently: a PUT answers 200
    or 201 and a DELETE 204 or 404, never a 403 (the reason for a write that changed
    nothing was read in two statements, with a delete and a re-create between them; a
    replace checked the owner in its statement's snapshot, which lacked the owner of a
    row created after it began) nor a 404 for a PUT."""
    token = bearer(await server.token("write"))
    tool_id = f"self-race-{uid}"
    statuses: list[int] = []

    async def churn(worker: int) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            for n in range(40):
                if (n + worker) % 2:
                    response = await http.delete(f"/v1/tools/{tool_id}", headers=token)
                    assert response.status_code in (204, 404), response.text
                else:
                    body = tool_body(tool_id)
                    response = await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)
                    assert response.status_code in (200, 201), response.text
                statuses.append(response.status_code)

    await asyncio.gather(*(churn(w) for w in range(8)))
    assert len(statuses) == 320


async def test_a_put_racing_another_tokens_delete_never_answers_404(
    server: Server, uid: str
) -> None:
    """Token b creates and deletes an id over and over; token a replaces it meanwhile. Each
    of a's PUTs is refused (b owns the tool: 403) or creates or replaces it (201, 200),
    never a 404 (a refused replace whose diagnosis found the tool deleted answered that
    a PUT's tool is not registered, though a PUT creates a missing tool)."""
    async with _racers(server) as (tokens, one, two):
        tool_id = f"put-vs-delete-{uid}"
        seen: dict[str, list[int]] = {"a": [], "b": []}

        async def owner_churn() -> None:
            for _ in range(60):
                put = await two.put(
                    f"/v1/tools/{tool_id}", json=_by(tool_id, "b"), headers=tokens["b"]
                )
                deleted = await two.delete(f"/v1/tools/{tool_id}", headers=tokens["b"])
                seen["b"] += [put.status_code, deleted.status_code]

        async def replacer() -> None:
            for _ in range(120):
                put = await one.put(
                    f"/v1/tools/{tool_id}", json=_by(tool_id, "a"), headers=tokens["a"]
                )
                assert put.status_code in (200, 201, 403), put.text
                seen["a"].append(put.status_code)
                if put.status_code in (200, 201):  # a owns it now: give it back
                    assert (
                        await one.delete(f"/v1/tools/{tool_id}", headers=tokens["a"])
                    ).status_code in (204, 404)

        await asyncio.gather(owner_churn(), replacer())
        assert len(seen["a"]) == 120
        assert set(seen["b"]) <= {200, 201, 204, 403, 404}, seen["b"]
