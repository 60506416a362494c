"""The registration -> server.json mapping on its own: names, versions and their order, the
status that follows health, each entry valid against the official schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omninode_bridge.api.mcp.servers import build_catalog, server_name
from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.live_view import LiveTool
from omninode_bridge.settings import Settings
from tests.api.mcp.registry_schema import OFFICIAL, check_entry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def live(
    tool_id: str,
    *,
    minutes: int = 0,
    endpoints: Any = None,
    heartbeat_ok: bool = True,
    check_status: str | None = None,
    **metadata: Any,
) -> LiveTool:
    at = T0 + timedelta(minutes=minutes)
    return LiveTool.of(
        ModelToolRegistration(
            id=uuid.uuid4(),
            tool_id=tool_id,
            node_type="compute",
            endpoints={"mcp": "http://h/mcp"} if endpoints is None else endpoints,
            metadata=metadata,
            registered_at=at,
            updated_at=at,
        ),
        heartbeat_ok=heartbeat_ok,
        check_status=check_status,
    )


@pytest.mark.parametrize(
    ("tool_id", "declared", "expected"),
    [
        ("plain", None, "ns/plain"),
        ("a:b@c", None, "ns/a-b-c"),
        ("x", "com.example/good_name-1.0", "com.example/good_name-1.0"),
        ("x", "two/slashes/here", "ns/x"),
        ("x", "a/", "ns/x"),
        ("x", "no-slash", "ns/x"),
        ("y" * 198, None, None),  # too long once namespaced
    ],
)
def test_server_names(tool_id: str, declared: str | None, expected: str | None) -> None:
    metadata: dict[str, Any] = {"mcp_name": declared} if declared is not None else {}
    assert server_name(live(tool_id, **metadata), "ns") == expected


def test_no_mcp_endpoint_no_server() -> None:
    assert server_name(live("t", endpoints={"ask": "http://h/ask"}), "ns") is None
    assert server_name(live("t", endpoints={"mcp-sse": "http://h/sse"}), "ns") == "ns/t"


@pytest.mark.parametrize(
    "version", ["^1.2.3", "~1.2", ">=1.0", "1.x", "1.*", "1.0 - 2.0", "1 || 2", "latest", ""]
)
def test_ranges_and_latest_are_not_versions(version: str) -> None:
    catalog = build_catalog([live("t", version=version)], "ns")
    assert [v.version for v in catalog["ns/t"]] == ["0.0.0"]


def test_semver_precedence_picks_latest_and_orders_newest_first() -> None:
    versions = ["1.0.0-alpha", "1.0.0", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-alpha.1", "0.9.9"]
    tools = [live(f"t{n}", mcp_name="a/b", version=v) for n, v in enumerate(versions)]
    ordered = build_catalog(tools, "ns")["a/b"]
    assert [v.version for v in ordered] == [
        "1.0.0", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-alpha.1", "1.0.0-alpha", "0.9.9"
    ]  # fmt: skip
    assert [v.is_latest for v in ordered] == [True] + [False] * 5


def test_non_semantic_versions_go_by_publication() -> None:
    tools = [
        live("old", minutes=0, mcp_name="a/b", version="2024-rc"),
        live("new", minutes=5, mcp_name="a/b", version="2023-final"),
    ]
    ordered = build_catalog(tools, "ns")["a/b"]
    assert [v.version for v in ordered] == ["2023-final", "2024-rc"]
    assert ordered[0].is_latest


def test_replicas_share_an_entry_with_the_earliest_publication_and_latest_update() -> None:
    tools = [
        live("r2", minutes=3, mcp_name="a/b", version="1.0.0", endpoints={"mcp": "http://2/mcp"}),
        live("r1", minutes=1, mcp_name="a/b", version="1.0.0", endpoints={"mcp": "http://1/mcp"}),
    ]
    (entry,) = build_catalog(tools, "ns")["a/b"]
    assert [t.registration.tool_id for t in entry.instances] == ["r1", "r2"]
    assert entry.published_at == T0 + timedelta(minutes=1)
    assert entry.updated_at == T0 + timedelta(minutes=3)
    body = entry.as_json()
    assert [r["url"] for r in body["server"]["remotes"]] == ["http://1/mcp", "http://2/mcp"]
    assert body["_meta"]["io.modelcontextprotocol.registry/official"] == {
        "status": "active",
        "publishedAt": "2026-01-01T00:01:00Z",
        "updatedAt": "2026-01-01T00:03:00Z",
        "isLatest": True,
    }


def test_malformed_metadata_is_left_out_not_passed_on() -> None:
    tool = live(
        "t",
        title="   ",
        website_url="javascript:alert(1)",
        repository={"url": "not a url", "source": "github"},
        description=["not", "text"],
    )
    server = build_catalog([tool], "ns")["ns/t"][0].as_json()["server"]
    assert set(server) == {"$schema", "name", "description", "version", "remotes"}
    assert server["description"] == "compute tool t"


def test_the_default_namespace_is_io_omninode() -> None:
    assert Settings().mcp_namespace == "io.omninode"
    assert server_name(live("a:b"), Settings().mcp_namespace) == "io.omninode/a-b"


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ([(True, None)], "active"),
        ([(False, None)], "deprecated"),  # stale
        ([(True, "critical")], "deprecated"),
        ([(True, "passing")], "active"),
        ([(False, None), (True, "critical")], "deprecated"),
        ([(False, None), (True, None)], "active"),  # one healthy replica serves it
    ],
)
def test_status_is_deprecated_while_no_instance_is_healthy(
    states: list[tuple[bool, str | None]], status: str
) -> None:
    tools = [
        live(f"r{n}", mcp_name="a/b", version="1.0.0", heartbeat_ok=ok, check_status=check)
        for n, (ok, check) in enumerate(states)
    ]
    (entry,) = build_catalog(tools, "ns")["a/b"]
    body = entry.as_json()
    check_entry(body)
    assert body["_meta"][OFFICIAL]["status"] == status
    assert [i["health"] for i in body["_meta"]["io.omninode/toolreg"]["instances"]] == [
        t.health for t in tools
    ]


def test_every_entry_is_valid_against_the_official_schema() -> None:
    tools = [
        live("plain"),
        live("long", description="d" * 300, title="t" * 300, version="9" * 300),
        live("site", website_url="https://example.com/x", repository={
            "url": "https://github.com/a/b", "source": "github", "id": "1", "subfolder": "s"}),
        live("sse", endpoints={"mcp-sse": "http://h/sse", "mcp": "https://h/mcp"}),
        live("odd:id@with/slash", version="2024.1-final", mcp_name="x"),
    ]  # fmt: skip
    for versions in build_catalog(tools, "io.omninode").values():
        for version in versions:
            check_entry(version.as_json())
