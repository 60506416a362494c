"""``call_tool`` through the official SDK's client over Streamable HTTP against a real
``toolreg serve`` and real local HTTP tools: success, failover from a dead tool, a 5xx not
retried (and retried when idempotent), no routable tool, a timeout, and the token rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.api.mcp.helpers import failed, mcp_client, ok, refused, register, routable
from tests.services.discovery.tool_server import Reply, ToolServer
from tests.support import Server, free_port, operation_body

MODES = ["auto", "legacy"]


@asynccontextmanager
async def _one_tool(
    registry: Server, token: str, operation: str, name: str, path: str
) -> AsyncIterator[ToolServer]:
    """A tool ``name`` answering at ``path``, registered as the one tool of ``operation``
    and routable."""
    async with ToolServer(name) as tool:
        await register(registry, token, operation_body(f"{operation}-1", operation, tool.url(path)))
        await routable(registry, operation, 1)
        yield tool


@pytest.mark.parametrize("mode", MODES)
async def test_call_tool_answers_what_the_tool_answered(
    registry: Server, uid: str, mode: str
) -> None:
    token = await registry.token("write")
    admin = await registry.token("admin")
    op = f"call-{uid}"
    async with _one_tool(registry, token, op, "stamper", "/stamp") as stamper:
        for secret in (token, admin):
            async with mcp_client(registry, secret, mode=mode) as client:
                payload = {"text": "héllo", "nested": {"n": [1, 2]}}
                arguments = {"operation": op, "payload": payload}
                answer = ok(await client.call_tool("call_tool", arguments))
                assert answer == {"tool": "stamper", "path": "/stamp", "received": payload}
        assert [body for _, body in stamper.requests] == [payload, payload]


async def test_call_tool_fails_over_from_a_dead_tool(registry: Server, uid: str) -> None:
    token = await registry.token("write")
    op = f"failover-{uid}"
    async with ToolServer("live") as live:
        await register(
            registry, token, operation_body(f"{op}-dead", op, f"http://127.0.0.1:{free_port()}/")
        )
        await register(registry, token, operation_body(f"{op}-live", op, live.url("/x")))
        await routable(registry, op, 2)
        async with mcp_client(registry, token) as client:
            reasons: dict[str, str] = {}
            calls = 0
            # Each call picks one of the two at random; keep calling until the dead one has
            # been picked (and ejected): every call must still succeed, on the live one.
            while reasons.get(f"{op}-dead") != "ejected" and calls < 40:
                calls += 1
                arguments = {"operation": op, "payload": {"n": calls}}
                answer = ok(await client.call_tool("call_tool", arguments))
                assert answer["tool"] == "live" and answer["received"] == {"n": calls}
                found = ok(await client.call_tool("discover", {"operation": op}))
                reasons = {t["tool_id"]: t["reason"] for t in found["explanation"]["tools"]}
        assert reasons[f"{op}-dead"] == "ejected", reasons
        assert len(live.requests) == calls


async def test_a_5xx_is_not_retried_unless_the_call_is_idempotent(
    registry: Server, uid: str
) -> None:
    token = await registry.token("write")
    op = f"fivexx-{uid}"
    reply = Reply(status=500, body=b'{"oops": "disk full"}')
    async with ToolServer("broken", reply=reply) as broken, ToolServer("good") as good:
        await register(registry, token, operation_body(f"{op}-broken", op, broken.url("/b")))
        await register(registry, token, operation_body(f"{op}-good", op, good.url("/g")))
        await routable(registry, op, 2)
        async with mcp_client(registry, token) as client:
            error = None
            for n in range(40):  # until the broken one is picked
                before = len(good.requests)
                result = await client.call_tool("call_tool", {"operation": op, "payload": {"n": n}})
                if result.is_error:
                    error = failed(result)
                    assert len(good.requests) == before  # not retried on the good one
                    break
            assert error is not None, "the broken tool was never picked"
            assert error["kind"] == "tool_error" and error["status"] == 500
            assert error["tool_id"] == f"{op}-broken" and error["endpoint"] == broken.url("/b")
            assert error["body_start"] == '{"oops": "disk full"}'
            assert error["retryable"] is True and "idempotent=true" in error["hint"]
            assert f"tool {op}-broken at {broken.url('/b')} answered 500" in error["message"]

            # Idempotent: a 5xx goes on to the next tool, so every call succeeds.
            broken_before = len(broken.requests)
            for n in range(20):
                arguments = {"operation": op, "payload": {"n": n}, "idempotent": True}
                assert ok(await client.call_tool("call_tool", arguments))["tool"] == "good"
            assert len(broken.requests) > broken_before  # it was tried, and passed over


async def test_a_4xx_and_a_timeout_are_errors_a_model_can_act_on(
    registry: Server, uid: str
) -> None:
    token = await registry.token("write")
    picky, slow = f"picky-{uid}", f"slow-{uid}"
    rejecting = Reply(status=400, body=b'{"error": "content is required"}')
    async with (
        ToolServer("picky", reply=rejecting) as picky_tool,
        ToolServer("slow", reply=Reply(delay=5)) as slow_tool,
    ):
        await register(registry, token, operation_body(picky, picky, picky_tool.url("/p")))
        await register(registry, token, operation_body(slow, slow, slow_tool.url("/s")))
        await routable(registry, slow, 1)
        async with mcp_client(registry, token) as client:
            bad = failed(await client.call_tool("call_tool", {"operation": picky, "payload": {}}))
            assert bad["kind"] == "tool_error" and bad["status"] == 400
            assert bad["retryable"] is False and bad["body_start"].startswith('{"error"')
            late = failed(
                await client.call_tool(
                    "call_tool", {"operation": slow, "payload": {}, "timeout_seconds": 0.3}
                )
            )
    assert late["kind"] == "timeout" and late["tool_id"] == slow and late["status"] is None
    assert late["retryable"] is True and "timeout_seconds" in late["hint"]
    assert "ReadTimeout" in late["message"]


@pytest.mark.parametrize("mode", MODES)
async def test_no_routable_tool_is_an_error_with_the_explanation(
    registry: Server, uid: str, mode: str
) -> None:
    token = await registry.token("write")
    op = f"nowhere-{uid}"
    await register(
        registry, token, {**operation_body(f"{op}-bare", op, "http://h:1/x"), "endpoints": {}}
    )
    async with mcp_client(registry, token, mode=mode) as client:
        nobody = failed(
            await client.call_tool("call_tool", {"operation": f"none-{uid}", "payload": {}})
        )
        assert nobody["kind"] == "no_routable_tool" and nobody["operation"] == f"none-{uid}"
        assert nobody["explanation"]["declared"] == 0 and nobody["retryable"] is True
        assert nobody["message"].startswith("No routable tool: No tool found for operation: none-")

        declared = None
        for _ in range(50):  # until the index has the bare tool
            declared = failed(await client.call_tool("call_tool", {"operation": op, "payload": {}}))
            if declared["explanation"]["declared"] == 1:
                break
        assert declared is not None and declared["kind"] == "no_routable_tool"
        assert declared["explanation"]["tools"][0]["reason"] == "no_endpoint"


@pytest.mark.parametrize("mode", MODES)
async def test_call_tool_needs_a_write_or_admin_token(
    registry: Server, uid: str, mode: str
) -> None:
    token = await registry.token("write")
    reader = await registry.token("read")
    op = f"guarded-{uid}"
    async with _one_tool(registry, token, op, "guarded", "/g") as guarded:
        arguments = {"operation": op, "payload": {"x": 1}}
        async with mcp_client(registry, mode=mode) as anonymous:
            denied = failed(await anonymous.call_tool("call_tool", arguments))
            assert denied["kind"] == "unauthorized" and denied["retryable"] is False
            assert denied["message"].startswith("Unauthorized: writes need a bearer token")
            assert "Authorization: Bearer" in denied["hint"]
            # Reads stay open (TOOLREG_READS_REQUIRE_TOKEN is off here).
            ok(await anonymous.call_tool("discover", {"operation": op}))
        async with mcp_client(registry, reader, mode=mode) as read_only:
            forbidden = failed(await read_only.call_tool("call_tool", arguments))
            assert forbidden["kind"] == "forbidden" and "scope read" in forbidden["message"]
        async with mcp_client(registry, token, mode=mode) as writer:
            assert "payload" in refused(await writer.call_tool("call_tool", {"operation": op}))
    assert guarded.requests == []  # no refused call reached the tool
