"""A call is never run twice unless it may be, and a tool cannot flood the caller.

A non-idempotent request goes to a second tool only when the first provably
never got it (refused, connect timeout, failed while writing it). A tool that
read the request and then reset the connection may have acted on it. An
answer larger than ``TOOLREG_MAX_RESPONSE_BYTES`` is refused as soon as that
is known, and the connection is closed instead of reading the rest.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from omninode_bridge.errors import ToolCallError, ToolResponseTooLargeError
from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from omninode_bridge.services.discovery.calls import Failure, classify
from tests.services.discovery.helpers import FAST, ToolFactory, discovery_settings, register, until
from tests.services.discovery.tool_server import Reply, ToolServer

CAP = 64 * 1024
BIG = 5 * 1024 * 1024


async def routable(service: ToolDiscoveryService, count: int) -> None:
    async def enough() -> bool:
        return len(await service.routable_tools("stamp")) >= count

    await until(service, enough, 2.0)


def capped(repository: ToolRegistrationRepository) -> ToolDiscoveryService:
    """A service that refuses answers over ``CAP`` bytes, to start with ``async with`` (the
    tests check what the tools saw once it has closed its connections)."""
    return ToolDiscoveryService(repository, discovery_settings(max_response_bytes=CAP), tuning=FAST)


async def two_tools(
    repository: ToolRegistrationRepository,
    service: ToolDiscoveryService,
    http_tool: ToolFactory,
    first: Reply,
    second: Reply,
) -> tuple[ToolServer, ToolServer]:
    a, b = await http_tool("a", first), await http_tool("b", second)
    await register(repository, "a", a.url())
    await register(repository, "b", b.url())
    await routable(service, 2)
    return a, b


# -- a reset after the request was read -------------------------------------------------


def test_only_a_failure_before_the_request_was_written_counts_as_not_sent() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/stamp")

    def failed(cls: type[httpx.TransportError], cause: BaseException | None) -> Failure:
        exc = cls("failed", request=request)
        exc.__cause__ = cause
        return classify(exc)

    reset = ConnectionResetError(104, "Connection reset by peer")
    assert failed(httpx.ConnectError, ConnectionRefusedError()) is Failure.NOT_SENT
    assert failed(httpx.ConnectTimeout, None) is Failure.NOT_SENT
    assert failed(httpx.WriteError, reset) is Failure.NOT_SENT
    assert failed(httpx.WriteError, BrokenPipeError()) is Failure.NOT_SENT
    assert failed(httpx.ReadError, reset) is Failure.UNKNOWN
    assert failed(httpx.ReadError, None) is Failure.UNKNOWN
    assert failed(httpx.RemoteProtocolError, None) is Failure.UNKNOWN
    assert failed(httpx.ReadTimeout, None) is Failure.UNKNOWN
    assert failed(httpx.PoolTimeout, None) is Failure.FINAL


async def test_a_tool_that_read_the_request_then_reset_is_never_followed_by_another(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    dying = Reply(reset_after_read=True)
    a, b = await two_tools(repository, service, http_tool, dying, dying)
    with pytest.raises(ToolCallError) as info:
        await service.route_request("stamp", {"charge": 1})
    assert len(a.requests) + len(b.requests) == 1, "the request ran on two tools"
    reached = a if a.requests else b
    assert reached.requests == [("/stamp", {"charge": 1})]
    error = info.value
    assert error.tool_id == reached.name and error.endpoint == reached.url("/stamp")
    assert error.status is None
    assert "gave no answer (ReadError" in str(error)
    assert service.metrics.failovers == 0
    assert service.metrics.call_failures == 1
    # A reset still puts the tool out of rotation: it is broken, whatever it did.
    assert reached.name in service.index.ejected()


async def test_an_idempotent_call_moves_on_after_such_a_reset(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    dying, live = await two_tools(
        repository, service, http_tool, Reply(reset_after_read=True), Reply()
    )
    for n in range(40):
        result = await service.route_request("stamp", {"n": n}, idempotent=True)
        assert result["tool"] == "b"
        if dying.requests:
            break
    assert len(dying.requests) == 1
    assert live.requests[-1] == dying.requests[0]  # the same request, repeated
    assert service.metrics.failovers == 1
    assert service.metrics.call_failures == 0


# -- the response cap ----------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_answer_past_the_cap_is_refused_without_reading_it(
    repository: ToolRegistrationRepository, http_tool: ToolFactory, chunked: bool
) -> None:
    async with capped(repository) as service:
        big = Reply(big=BIG, chunked=chunked)
        a, b = await two_tools(repository, service, http_tool, big, big)
        with pytest.raises(ToolResponseTooLargeError) as info:
            # Idempotent, and still final: the tool acted, and answering again
            # would not make the answer smaller.
            await service.route_request("stamp", {}, idempotent=True)
        assert service.metrics.failovers == 0
        assert service.metrics.call_failures == 1
        assert service.index.ejected() == {}
    assert len(a.requests) + len(b.requests) == 1
    reached = a if a.requests else b
    error = info.value
    assert isinstance(error, ToolCallError)
    assert error.tool_id == reached.name and error.endpoint == reached.url("/stamp")
    assert error.status == 200
    assert error.limit == CAP
    assert error.declared == (None if chunked else BIG)
    assert f"limit of {CAP} bytes (TOOLREG_MAX_RESPONSE_BYTES)" in str(error)
    # The caller hung up: the tool could not write the body out.
    async with asyncio.timeout(10):
        await reached.big_done.wait()
    assert reached.cut_short == [True]
    assert reached.sent[0] < BIG // 2


async def test_an_answer_at_the_cap_is_read(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    async with capped(repository) as service:
        a, b = await two_tools(
            repository, service, http_tool, Reply(big=CAP, chunked=True), Reply(big=CAP)
        )
        for _ in range(4):
            result = await service.route_request("stamp", {})
            assert len(result["pad"]) == CAP - 10
    assert a.cut_short.count(False) + b.cut_short.count(False) == 4


async def test_a_huge_5xx_is_not_read_and_still_moves_an_idempotent_call_on(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    async with capped(repository) as service:
        broken, fine = await two_tools(
            repository, service, http_tool, Reply(status=503, big=BIG), Reply()
        )
        calls = 0
        while not broken.requests and calls < 40:
            assert (await service.route_request("stamp", {}, idempotent=True))["tool"] == "b"
            calls += 1
        assert len(broken.requests) == 1
        assert len(fine.requests) == calls  # the failed-over one included
        assert service.metrics.failovers == 1
    async with asyncio.timeout(10):
        await broken.big_done.wait()
    assert broken.cut_short == [True]
    assert broken.sent[0] < BIG // 2
