"""ToolStore gives back the LiveTool it was given, and forgets digests no tool uses."""

from __future__ import annotations

import itertools
import uuid

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.services.live_store import ToolStore
from omninode_bridge.services.live_tool import DEFAULT_CODEC, LiveTool

FLOOR = 7


def tool(tool_id: str, tags: list[str], **state: object) -> LiveTool:
    registration = ModelToolRegistration(
        id=uuid.uuid4(),
        tool_id=tool_id,
        node_type="effect",
        endpoints={"metrics": "http://h:9090/metrics"} if "m" in tags else {},
        metadata={"tags": tags},
    )
    return LiveTool.of(registration, DEFAULT_CODEC, **state)


def test_every_field_comes_back() -> None:
    store = ToolStore(DEFAULT_CODEC, FLOOR)
    states = itertools.product(
        (True, False),
        (None, "passing", "critical"),
        ("", "HTTP 500"),
        ((FLOOR, FLOOR), (9, FLOOR), (2**40, 9)),
    )
    cases = [
        {
            "heartbeat_ok": ok,
            "check_status": check,
            "check_output": out,
            "version": v,
            "created_version": c,
        }
        for ok, check, out, (v, c) in states
    ]
    stored = [tool(f"t{n}", ["a"], **case) for n, case in enumerate(cases)]
    for t in stored:
        store.put(t)
    for t in stored:
        back = store.get(t.tool_id)
        assert back == t
        assert back is not None and back.registration == t.registration
    assert sorted(store, key=lambda t: t.tool_id) == sorted(stored, key=lambda t: t.tool_id)
    assert store.get("missing") is None


def test_replacing_and_popping_release_digests() -> None:
    store = ToolStore(DEFAULT_CODEC, FLOOR)
    store.put(tool("a", ["x"], version=FLOOR, created_version=FLOOR))
    store.put(tool("b", ["x", "m"], version=FLOOR, created_version=FLOOR))
    assert [t.tool_id for t in store.select(lambda d: "metrics" in d.endpoints)] == ["b"]
    store.put(tool("b", ["y"], check_output="down", version=9, created_version=FLOOR))
    assert list(store.select(lambda d: "metrics" in d.endpoints)) == []
    assert len(store._digest_ids) == 2  # x and y; x+m is gone
    store.pop("a")
    store.pop("a")  # twice: nothing
    assert len(store._digest_ids) == 1
    assert len(store) == 1
    b = store.get("b")
    assert b is not None and b.check_output == "down" and b.version == 9
    store.put(tool("b", ["y"], version=FLOOR, created_version=FLOOR))
    b = store.get("b")
    assert b is not None and b.check_output == "" and b.version == FLOOR
