"""One client holds at most ``TOOLREG_MCP_LISTENS_PER_CLIENT`` listen streams on a server:
the SDK's 1024 for the whole server are not one client's to take. Over the bound a listen
is 429 with ``Retry-After``; the others still listen, and a slot is free again as soon as
one of the client's streams ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from omninode_bridge.api.mcp.endpoint import _ListenSlots
from omninode_bridge.errors import TooManyStreamsError
from omninode_bridge.problem_types import PROBLEM_BASE, error_from_problem
from tests.api.mcp.helpers import ENV, LISTEN_HEADERS, listen_body, mcp_client
from tests.support import Server, assert_problem, bearer, running_server

LIMIT = 3
SETTING = "TOOLREG_MCP_LISTENS_PER_CLIENT"


@pytest.fixture(scope="module")
def capped(module_db: str) -> Iterator[Server]:
    """A registry that lets each client hold three listen streams; reads open."""
    with running_server(module_db, env={**ENV, SETTING: str(LIMIT)}) as running:
        yield running


@asynccontextmanager
async def _raw_listen(http: httpx.AsyncClient, token: str | None) -> AsyncIterator[httpx.Response]:
    """A raw listen POST whose answer is held open for the body (its headers are read)."""
    headers = {**LISTEN_HEADERS, **(bearer(token) if token else {})}
    body = listen_body({"resourcesListChanged": True})
    async with http.stream("POST", "/mcp", content=body, headers=headers) as response:
        yield response


async def _refused(http: httpx.AsyncClient, token: str | None) -> None:
    """A listen that is over the client's bound: 429, naming the bound and the setting."""
    async with _raw_listen(http, token) as response:
        assert response.status_code == 429, "a listen over the bound was accepted"
        await response.aread()
    problem = assert_problem(response, 429)
    assert problem["type"] == PROBLEM_BASE + "too-many-streams"
    assert problem["limit"] == LIMIT and problem["setting"] == SETTING
    assert SETTING in problem["detail"] and str(LIMIT) in problem["detail"]
    assert 1 <= int(response.headers["retry-after"]) <= 10
    rebuilt = error_from_problem(response.status_code, problem)  # as RegistryClient would
    assert isinstance(rebuilt, TooManyStreamsError) and rebuilt.limit == LIMIT


async def test_a_token_over_its_bound_is_429_and_the_others_still_listen(capped: Server) -> None:
    first, other = await capped.token("read"), await capped.token("read")
    async with (
        httpx.AsyncClient(base_url=capped.base_url, timeout=10) as http,
        mcp_client(capped, first) as client,
        client.listen(resources_list_changed=True),
        client.listen(resources_list_changed=True),
    ):
        # The third on a client of its own, which then disconnects.
        leaving = AsyncExitStack()
        try:
            gone = await leaving.enter_async_context(mcp_client(capped, first))
            await leaving.enter_async_context(gone.listen(resources_list_changed=True))
            await _refused(http, first)
            async with (
                mcp_client(capped, other) as second,
                second.listen(resources_list_changed=True),
                mcp_client(capped) as anonymous,
                anonymous.listen(resources_list_changed=True),
            ):
                await _refused(http, first)  # still full
        finally:
            await leaving.aclose()
        # Its slot is free again once the server sees the client gone.
        async with asyncio.timeout(5):
            while True:
                async with _raw_listen(http, first) as response:
                    if response.status_code == 200:
                        break
                    await response.aread()
                    assert response.status_code == 429, response.text
                await asyncio.sleep(0.1)


async def test_anonymous_listens_count_against_the_clients_address(capped: Server) -> None:
    token = await capped.token("read")
    async with AsyncExitStack() as held, httpx.AsyncClient(base_url=capped.base_url) as http:
        for _ in range(LIMIT):
            client = await held.enter_async_context(mcp_client(capped))
            await held.enter_async_context(client.listen(resources_list_changed=True))
        await _refused(http, None)
        async with mcp_client(capped, token) as client, client.listen(resources_list_changed=True):
            pass


async def test_a_slot_is_freed_however_its_stream_ends() -> None:
    """A stream that the server ends by cancelling it (shutdown) or that fails gives its
    slot back as one whose client left does (the test above)."""
    slots = _ListenSlots(1)

    async def stream() -> None:
        with slots.taken("token a"):
            await asyncio.Event().wait()

    held = asyncio.ensure_future(stream())
    await asyncio.sleep(0)
    with pytest.raises(TooManyStreamsError), slots.taken("token a"):
        pass
    with slots.taken("token b"):
        pass  # another client's slots are its own
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)
    with pytest.raises(RuntimeError), slots.taken("token a"):
        raise RuntimeError("the stream failed")
    with slots.taken("token a"):
        pass
