"""Every tool is an MCP resource: listed (paged), read, and announced on ``subscriptions/listen``
when the list changes or a tool's registration or health does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from mcp import MCPError
from mcp.client.subscriptions import (
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    Subscription,
)
from mcp.types import EmptyResult, SubscribeRequest, SubscribeRequestParams

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.api.mcp.helpers import mcp_client, register, until_event
from tests.support import Server, base_settings, bearer


def _tool(tool_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "node_type": "reducer",
        "capabilities": {"operations": ["fold"]},
        "endpoints": {"fold": "http://h:1/fold"},
        **extra,
    }


async def _events(subscription: Subscription, count: int, timeout: float = 10) -> list[ServerEvent]:
    events: list[ServerEvent] = []
    async with asyncio.timeout(timeout):
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_tools_are_listed_and_read_as_resources(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    await register(registry, token, _tool(f"res-{uid}:1@a", metadata={"k": "v"}))
    async with mcp_client(registry) as client:
        listed = await client.list_resources()
        mine = [r for r in listed.resources if r.name == f"res-{uid}:1@a"]
        assert len(mine) == 1
        assert str(mine[0].uri) == f"toolreg://tools/res-{uid}:1@a"
        assert mine[0].mime_type == "application/json"
        assert mine[0].description == "reducer tool, healthy"

        read = await client.read_resource(f"toolreg://tools/res-{uid}:1@a")
        document = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert document["tool_id"] == f"res-{uid}:1@a" and document["metadata"] == {"k": "v"}
        assert document["health"]["status"] == "healthy"
        assert document["health"]["heartbeat_fresh"] is True
        # The same tool through the percent-encoded form of its URI.
        again = await client.read_resource(f"toolreg://tools/res-{uid}%3A1%40a")
        assert json.loads(again.contents[0].text)["tool_id"] == f"res-{uid}:1@a"  # type: ignore[union-attr]

        with pytest.raises(MCPError) as info:
            await client.read_resource(f"toolreg://tools/absent-{uid}")
        assert f"tool_id 'absent-{uid}' is not registered" in str(info.value)

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["toolreg://tools/{tool_id}"]


async def test_the_resource_list_is_paged_by_tool_id(registry: Server, uid: str) -> None:
    # More than a page: written straight to the database, in one batch.
    async with PostgresClient(base_settings(pool_max_size=2), dsn=registry.dsn) as db:
        repository = ToolRegistrationRepository(db)
        await repository.create_registrations(
            [
                ModelToolRegistrationCreate(tool_id=f"page-{uid}-{n:04d}", node_type="effect")
                for n in range(620)
            ]
        )
    async with mcp_client(registry) as client:
        seen: list[str] = []
        cursor = None
        pages = 0
        for _ in range(50):
            page = await client.list_resources(cursor=cursor)
            pages += 1
            assert len(page.resources) <= 500
            seen += [r.name for r in page.resources]
            cursor = page.next_cursor
            if cursor is None:
                break
        mine = [s for s in seen if s.startswith(f"page-{uid}-")]
        assert mine == [f"page-{uid}-{n:04d}" for n in range(620)]  # each once, in order
        assert pages >= 2 and seen == sorted(seen)
        with pytest.raises(MCPError, match="cursor"):
            await client.list_resources(cursor="%%%")


async def test_listeners_hear_the_list_change_and_each_subscribed_tool_change(
    expiring: Server, uid: str
) -> None:
    token = await expiring.token("write")
    watched = f"watch-{uid}"
    uri = f"toolreg://tools/{watched}"
    await register(expiring, token, _tool(watched))
    async with (
        mcp_client(expiring) as client,
        client.listen(resources_list_changed=True, resource_subscriptions=[uri]) as subscription,
    ):
        assert subscription.honored.resources_list_changed is True
        # A new tool: the list changed.
        await register(expiring, token, _tool(f"new-{uid}"))
        await until_event(subscription, ResourcesListChanged())
        # The watched tool is updated: its URI is announced; the list is the same.
        await register(expiring, token, _tool(watched, metadata={"v": 2}))
        await until_event(subscription, ResourceUpdated(uri=uri))
        read = await client.read_resource(uri)
        assert json.loads(read.contents[0].text)["metadata"] == {"v": 2}  # type: ignore[union-attr]
        # Its heartbeat lapses past the 2 s TTL: a health change is an update too.
        health = "healthy"
        async with asyncio.timeout(15):
            while health != "stale":
                await until_event(subscription, ResourceUpdated(uri=uri))
                read = await client.read_resource(uri)
                document = json.loads(read.contents[0].text)  # type: ignore[union-attr]
                health = document["health"]["status"]
        # Deleted: both.
        async with httpx.AsyncClient(base_url=expiring.base_url) as http:
            deleted = await http.delete(f"/v1/tools/{watched}", headers=bearer(token))
            assert deleted.status_code == 204
        got = await _events(subscription, 2)
        assert set(got) == {ResourcesListChanged(), ResourceUpdated(uri=uri)}


async def test_a_listener_hears_nothing_it_did_not_ask_for(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    async with (
        mcp_client(registry) as client,
        client.listen(resource_subscriptions=[f"toolreg://tools/quiet-{uid}"]) as subscription,
    ):
        await register(registry, token, _tool(f"loud-{uid}"))
        await register(registry, token, _tool(f"quiet-{uid}"))
        # Only the subscribed URI (the list change was not asked for).
        assert await _events(subscription, 1) == [
            ResourceUpdated(uri=f"toolreg://tools/quiet-{uid}")
        ]


async def test_notifications_are_offered_only_where_the_stateless_wire_can_carry_them(
    registry: Server,
) -> None:
    """2026-07-28: change notifications ride ``subscriptions/listen`` (a POST answered with an
    SSE stream), which a stateless server can serve. 2025-11-25: they would need a session and
    its standalone GET stream, which a stateless server has not, so none are advertised."""
    async with mcp_client(registry) as modern:
        resources = modern.server_capabilities.resources
        assert resources is not None
        assert resources.list_changed is True and resources.subscribe is True
    async with mcp_client(registry, mode="legacy") as legacy:
        resources = legacy.server_capabilities.resources
        assert resources is not None
        assert not resources.list_changed and not resources.subscribe
        with pytest.raises(MCPError, match="Method not found"):
            await legacy.session.send_request(  # resources/subscribe, without the deprecation
                SubscribeRequest(params=SubscribeRequestParams(uri="toolreg://tools/x")),
                EmptyResult,
            )
