"""RegistryClient against real server processes: register, read, watch, and survive a restart."""

from __future__ import annotations

import asyncio
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from omninode_bridge.client import RegistryClient
from omninode_bridge.errors import PermissionDeniedError, ValidationFailedError
from omninode_bridge.models import ModelToolRegistrationCreate
from tests.support import Server, start_server, stop_server


def tool(tool_id: str) -> ModelToolRegistrationCreate:
    return ModelToolRegistrationCreate(
        tool_id=tool_id,
        node_type="compute",
        capabilities={"operations": [f"op-{tool_id}"]},
        endpoints={f"op-{tool_id}": "http://127.0.0.1:9/run"},
    )


async def test_register_read_search_discover_deregister(server: Server, uid: str) -> None:
    token = await server.token("write")
    async with RegistryClient(server.base_url, token) as rc:
        stored, created = await rc.register(tool(f"rc-{uid}"))
        assert created is True
        again, created = await rc.register(tool(f"rc-{uid}"))
        assert created is False
        assert again.id == stored.id
        assert (await rc.get(f"rc-{uid}")) == again
        assert await rc.get(f"nope-{uid}") is None
        page = await rc.search(capabilities={"operations": [f"op-rc-{uid}"]})
        assert [t.tool_id for t in page.items] == [f"rc-{uid}"]
        found = None
        for _ in range(40):
            found = await rc.discover(f"op-rc-{uid}")
            if found is not None:
                break
            await asyncio.sleep(0.05)
        assert found is not None and found.tool_id == f"rc-{uid}"
        with pytest.raises(ValidationFailedError, match="where"):
            await rc.search(where="$.x >>> 1")
        assert await rc.deregister(f"rc-{uid}") is True
        assert await rc.deregister(f"rc-{uid}") is False
    async with (
        RegistryClient(server.base_url, token) as owner,
        RegistryClient(server.base_url, await server.token("write")) as other,
    ):
        await owner.register(tool(f"mine-{uid}"))
        with pytest.raises(PermissionDeniedError):
            await other.heartbeat(f"mine-{uid}")


async def test_watch_resumes_over_sse(server: Server, uid: str) -> None:
    token = await server.token("write")
    async with RegistryClient(server.base_url, token) as rc:
        events = rc.watch()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)
        await rc.register(tool(f"w-{uid}"))
        event = await asyncio.wait_for(first, 10)
        assert (event.kind, event.tool_id) == ("created", f"w-{uid}")
        await events.aclose()  # type: ignore[attr-defined]
        # Resume from that cursor: the next change, nothing repeated.
        await rc.deregister(f"w-{uid}")
        resumed = rc.watch(since=event.cursor)
        after = await asyncio.wait_for(anext(resumed), 10)
        assert (after.kind, after.tool_id) == ("deleted", f"w-{uid}")
        await resumed.aclose()  # type: ignore[attr-defined]


async def test_heartbeats_survive_a_server_restart(module_db: str, uid: str) -> None:
    first = start_server(module_db)
    port = urlsplit(first.base_url).port
    token = await first.token("write")
    async with RegistryClient(first.base_url, token, timeout=2) as rc:
        await rc.register(tool(f"alive-{uid}"))
        rc.start_heartbeats(f"alive-{uid}", every=0.2, max_backoff=0.5)
        await asyncio.sleep(0.5)
        stop_server(first)
        await asyncio.sleep(1.0)  # heartbeats fail meanwhile; the loop must not die
        assert all(not t.done() for t in rc._heartbeats.values())
        restarted_at = datetime.now().astimezone()
        second = start_server(module_db, port=port)
        try:
            beat = None
            for _ in range(50):
                await asyncio.sleep(0.2)
                current = await rc.get(f"alive-{uid}")
                assert current is not None and current.last_heartbeat is not None
                if current.last_heartbeat > restarted_at:
                    beat = current.last_heartbeat
                    break
            assert beat is not None, "no heartbeat reached the restarted server"
            assert current is not None and current.is_healthy(5)
        finally:
            stop_server(second)
