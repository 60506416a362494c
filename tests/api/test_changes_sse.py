"""The SSE change feed: live events, and resuming with Last-Event-ID loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from tests.support import Server, assert_problem, bearer, tool_body


class EventReader:
    """Parses one SSE response into events; several reads share one line iterator."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def read(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        current: dict[str, Any] = {}

        async def consume() -> None:
            async for line in self.lines:
                if line.startswith("id: "):
                    current["id"] = line[4:]
                elif line.startswith("event: "):
                    current["event"] = line[7:]
                elif line.startswith("data: "):
                    current["data"] = orjson.loads(line[6:])
                elif line == "" and "id" in current:
                    events.append(dict(current))
                    current.clear()
                    if len(events) == count:
                        return

        await asyncio.wait_for(consume(), timeout)
        return events


async def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    return await EventReader(response).read(count)


async def test_live_events_then_resume_after_disconnect(server: Server, uid: str) -> None:
    token = bearer(await server.token("write"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        async with http.stream("GET", "/v1/changes") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            await asyncio.sleep(0.3)
            await http.post("/v1/tools", json=tool_body(f"sse-{uid}-1"), headers=token)
            first = await read_events(stream, 1)
        assert first[0]["event"] == "created"
        assert first[0]["data"]["tool_id"] == f"sse-{uid}-1"
        last_id = first[0]["id"]

        # While disconnected: three more changes.
        await http.post("/v1/tools", json=tool_body(f"sse-{uid}-2"), headers=token)
        await http.patch(f"/v1/tools/sse-{uid}-2", json={"metadata": {"v": 2}}, headers=token)
        await http.delete(f"/v1/tools/sse-{uid}-1", headers=token)

        async with http.stream("GET", "/v1/changes", headers={"Last-Event-ID": last_id}) as stream:
            reader = EventReader(stream)
            missed = await reader.read(3)
            await http.post("/v1/tools", json=tool_body(f"sse-{uid}-3"), headers=token)
            live = await reader.read(1)
    assert [(e["event"], e["data"]["tool_id"]) for e in missed] == [
        ("created", f"sse-{uid}-2"),
        ("updated", f"sse-{uid}-2"),
        ("deleted", f"sse-{uid}-1"),
    ]
    assert live[0]["data"]["tool_id"] == f"sse-{uid}-3"
    ids = [e["id"] for e in [*first, *missed, *live]]
    assert len(ids) == len(set(ids))


async def test_since_query_and_bad_cursor(server: Server, uid: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        assert_problem(await http.get("/v1/changes", params={"since": "nonsense"}), 422)
        token = bearer(await server.token("write"))
        await http.post("/v1/tools", json=tool_body(f"since-{uid}"), headers=token)
        async with http.stream("GET", "/v1/changes", params={"since": "0-0"}) as stream:
            replay = await read_events(stream, 1)
        assert replay[0]["event"] == "created"
