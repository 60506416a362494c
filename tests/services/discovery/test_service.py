"""ToolDiscoveryService against a real database and real HTTP tools on loopback."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from omninode_bridge.errors import (
    DiscoveryError,
    MissingEndpointError,
    NoRoutableToolError,
    ToolCallError,
    ValidationFailedError,
)
from omninode_bridge.models import ModelToolRegistrationUpdate
from omninode_bridge.services import ToolDiscoveryService, ToolRegistrationRepository
from omninode_bridge.services.discovery import DiscoveryMetrics
from tests.services.discovery.helpers import (
    FAST,
    ToolFactory,
    discovery_settings,
    register,
    until,
)
from tests.services.discovery.tool_server import Reply

GUIDE_DATA = {"content": "Hello World", "namespace": "test"}


async def test_guide_usage_routes_to_a_real_tool(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    tool = await http_tool("stamper")
    await register(repository, "metadata-stamping-v1", tool.url("/api/v1"))
    # The guide's lines: no settings, no start, no close in between.
    discovery_service = ToolDiscoveryService(repository)
    try:
        result = await discovery_service.route_request("stamp", GUIDE_DATA)
        assert result == {"tool": "stamper", "path": "/api/v1/stamp", "received": GUIDE_DATA}
        assert tool.requests == [("/api/v1/stamp", GUIDE_DATA)]
        found = await discovery_service.discover_tool("stamp")
        assert found is not None and found.tool_id == "metadata-stamping-v1"
        assert found.is_healthy(300)
    finally:
        await discovery_service.aclose()


async def test_several_live_tools_share_the_load(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    tools = [await http_tool(f"t{i}") for i in range(3)]
    for i, tool in enumerate(tools):
        await register(repository, f"stamp-{i}", tool.url())
    await service.start()

    async def all_three() -> bool:
        return len(await service.routable_tools("stamp")) == 3

    await until(service, all_three, 2.0)
    answered: Counter[str] = Counter()
    for n in range(300):
        result = await service.route_request("stamp", {"n": n})
        answered[result["tool"]] += 1
    # Power of two choices with random ties: 100 each in expectation (sd 8).
    assert set(answered) == {"t0", "t1", "t2"}
    assert min(answered.values()) >= 65, answered
    assert sum(len(t.requests) for t in tools) == 300
    assert service.metrics.calls == 300


async def test_discover_spreads_and_ignores_other_operations(
    repository: ToolRegistrationRepository, http_tool: ToolFactory
) -> None:
    tool = await http_tool("t")
    await register(repository, "a", tool.url(), ("stamp", "hash"))
    await register(repository, "b", tool.url(), ("stamp",))
    await register(repository, "c", tool.url(), ("hash",))
    async with ToolDiscoveryService(repository, discovery_settings(), tuning=FAST) as svc:
        seen: Counter[str] = Counter()
        for _ in range(100):
            found = await svc.discover_tool("stamp")
            assert found is not None
            seen[found.tool_id] += 1
        assert set(seen) == {"a", "b"}
        assert min(seen.values()) >= 30
        assert await svc.discover_tool("unknown-op") is None


async def test_no_routable_tool_names_the_operation(service: ToolDiscoveryService) -> None:
    with pytest.raises(NoRoutableToolError, match="No tool found for operation: stamp") as info:
        await service.route_request("stamp", GUIDE_DATA)
    assert info.value.operation == "stamp"
    assert "no registered tool lists it" in str(info.value)
    assert isinstance(info.value, RuntimeError)


async def test_missing_endpoint_names_tool_and_operation(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService
) -> None:
    await register(repository, "no-endpoints", None, ("stamp",))

    async def indexed() -> bool:
        return await service.discover_tool("stamp") is not None

    await until(service, indexed, 2.0)
    with pytest.raises(MissingEndpointError) as info:
        await service.route_request("stamp", GUIDE_DATA)
    assert str(info.value) == "Tool no-endpoints does not have endpoint for: stamp"
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize(
    ("reply", "status", "fragment"),
    [
        (Reply(status=503, body=b"overloaded, try later", content_type="text/plain"), 503, "HTTP"),
        (Reply(status=404, body=b'{"detail": "no such route"}'), 404, "HTTP error"),
        (Reply(status=200, body=b"<html>hello</html>", content_type="text/html"), 200, "not JSON"),
        (Reply(status=200, body=b"[1, 2]"), 200, "not an object"),
    ],
)
async def test_bad_answers_name_tool_endpoint_status_and_body(
    repository: ToolRegistrationRepository,
    service: ToolDiscoveryService,
    http_tool: ToolFactory,
    reply: Reply,
    status: int,
    fragment: str,
) -> None:
    tool = await http_tool("bad", reply)
    await register(repository, "bad-tool", tool.url())

    async def indexed() -> bool:
        return await service.discover_tool("stamp") is not None

    await until(service, indexed, 2.0)
    with pytest.raises(ToolCallError) as info:
        await service.route_request("stamp", GUIDE_DATA)
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.tool_id == "bad-tool"
    assert error.endpoint == tool.url("/stamp")
    assert error.status == status
    assert reply.body is not None
    assert error.body_excerpt == reply.body.decode()
    message = str(error)
    assert "bad-tool" in message and tool.url("/stamp") in message
    assert str(status) in message and fragment in message
    assert reply.body.decode()[:10] in message
    # Reached the tool once: a POST is not repeated.
    assert len(tool.requests) == 1


async def test_long_bodies_are_cut_in_the_error(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    tool = await http_tool("long", Reply(status=500, body=b"x" * 5000, content_type="text/plain"))
    await register(repository, "long-tool", tool.url())

    async def indexed() -> bool:
        return await service.discover_tool("stamp") is not None

    await until(service, indexed, 2.0)
    with pytest.raises(ToolCallError) as info:
        await service.route_request("stamp", {})
    assert len(info.value.body_excerpt) <= 201
    assert len(str(info.value)) < 600


async def test_data_must_be_json(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService
) -> None:
    with pytest.raises(ValidationFailedError, match="data"):
        await service.route_request("stamp", {"when": object()})
    with pytest.raises(ValidationFailedError, match="capability"):
        await service.discover_tool(42)  # type: ignore[arg-type]


async def test_exclusion_hook_keeps_a_tool_out(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    good, sick = await http_tool("good"), await http_tool("sick")
    await register(repository, "good", good.url())
    await register(repository, "sick", sick.url())
    service.set_excluded("sick", "health check: critical")

    async def indexed() -> bool:
        return len(service.index) == 2

    await until(service, indexed, 2.0)
    for _ in range(20):
        assert (await service.route_request("stamp", {}))["tool"] == "good"
    assert sick.requests == []
    await repository.delete_registration("good")

    async def gone() -> bool:
        return "good" not in service.index

    await until(service, gone, 2.0)
    with pytest.raises(NoRoutableToolError, match=r"critical \(failing health checks\) \(sick\)"):
        await service.route_request("stamp", {})
    assert service.clear_excluded("sick") is True
    assert (await service.route_request("stamp", {}))["tool"] == "sick"
    assert service.clear_excluded("sick") is False


async def test_updates_are_followed(
    repository: ToolRegistrationRepository, service: ToolDiscoveryService, http_tool: ToolFactory
) -> None:
    old, new = await http_tool("old"), await http_tool("new")
    await register(repository, "mover", old.url())

    async def on(name: str) -> bool:
        found = await service.discover_tool("stamp")
        return found is not None and found.endpoints["stamp"].startswith(name)

    await until(service, lambda: on(old.url()), 2.0)
    await repository.update_registration(
        "mover", ModelToolRegistrationUpdate(endpoints={"stamp": new.url("/stamp")})
    )
    await until(service, lambda: on(new.url()), 2.0)
    assert (await service.route_request("stamp", {}))["tool"] == "new"
    await repository.update_registration(
        "mover", ModelToolRegistrationUpdate(capabilities={"operations": ["hash"]})
    )

    async def no_stamp() -> bool:
        return await service.discover_tool("stamp") is None

    await until(service, no_stamp, 2.0)


async def test_lifecycle(repository: ToolRegistrationRepository, http_tool: ToolFactory) -> None:
    tool = await http_tool("t")
    await register(repository, "t", tool.url())
    metrics = DiscoveryMetrics()
    async with httpx.AsyncClient() as client:
        svc = ToolDiscoveryService(
            repository, discovery_settings(), http_client=client, metrics=metrics, tuning=FAST
        )
        await svc.start()
        await svc.start()  # idempotent
        assert metrics.index_loads == 1
        answer = await svc.route_request("stamp", {})
        assert answer == {"tool": "t", "path": "/stamp", "received": {}}
        await svc.aclose()
        await svc.aclose()
        # A client the caller passed in stays open.
        assert not client.is_closed
        with pytest.raises(DiscoveryError, match="closed"):
            await svc.discover_tool("stamp")
    assert metrics.calls == 1
    assert metrics.index_tools == 1
    status = svc.status()
    assert status["tools"] == 1 and status["started"] is False
