"""Property: the compact index routes exactly as a plain model over full registrations would.

The reference keeps each :class:`ModelToolRegistration` as it came and decides
everything from scratch on every question; the index keeps routing facts in
columns, pools, heaps and shared endpoint templates. Random registrations
(operations with repeats and non-strings, endpoints missing, empty or in no
common pattern) and random events (register, update, delete, heartbeats
forwards and backwards, exclusions, ejections, restores, time passing) must
give the same routable set per operation, the same verdict for every declaring
tool, a pick from the right set with the registration's own URL, and the same
fallback when nothing is routable.

Times are whole seconds and ejections last whole seconds plus a half, so that
no deadline falls within the microseconds the clock moves while a step runs.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.services.discovery.balancer import PowerOfTwoBalancer
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.explain import CRITICAL_REASON
from omninode_bridge.services.discovery.index import ToolIndex

TTL = 10.0
T0 = 1_700_000_000.0
OPS = ["a", "b", "c"]
IDS = ["t1", "t2", "t3", "tool.4", "t5"]

declared = st.lists(st.sampled_from(OPS), min_size=1, max_size=4)
junk = st.lists(st.integers(0, 2) | st.none(), max_size=2)
url_styles = st.sampled_from(["own-host"] * 6 + ["shared-base", "odd", "empty", None])
beats = st.integers(-4, 5) | st.integers(-4, 5) | st.integers(-15, 5) | st.none()


@st.composite
def registrations(draw: st.DrawFn) -> tuple[str, Any, dict[str, str], int | None]:
    """Mostly routable tools (so that pools fill and empty); now and then odd ones."""
    tool_id = draw(st.sampled_from(IDS))
    ops: Any = draw(declared) + draw(junk)
    draw(st.randoms()).shuffle(ops)
    shape = draw(st.sampled_from(["list"] * 8 + ["string", "absent"]))
    ops = {"list": ops, "string": "a", "absent": None}[shape]
    endpoints: dict[str, str] = {}
    for op in [*OPS, "extra"]:
        style = draw(url_styles)
        if style is None:
            continue
        endpoints[op] = {
            "own-host": f"http://{tool_id}.svc:8080/v1/{op}",
            "shared-base": f"http://10.0.0.1/{op}",
            "odd": f"http://{tool_id}/{op}/run",
            "empty": "",
        }[style]
    return tool_id, ops, endpoints, draw(beats)


puts = st.tuples(st.just("put"), registrations(), st.booleans())
events = st.one_of(
    puts,
    puts,
    puts,
    st.tuples(st.just("heartbeat"), st.sampled_from(IDS), st.integers(-15, 5), st.booleans()),
    st.tuples(st.just("remove"), st.sampled_from(IDS)),
    st.tuples(st.just("exclude"), st.sampled_from(IDS), st.sampled_from(["x", CRITICAL_REASON])),
    st.tuples(st.just("clear"), st.sampled_from(IDS)),
    st.tuples(st.just("eject"), st.sampled_from(IDS), st.integers(0, 6)),
    st.tuples(st.just("restore"), st.sampled_from(IDS)),
    st.tuples(st.just("advance"), st.integers(1, 8)),
)


@dataclass
class Reference:
    """Full registrations and the plain rules of routing, recomputed on every question."""

    now: float = T0
    tools: dict[str, ModelToolRegistration] = field(default_factory=dict)
    beat: dict[str, float | None] = field(default_factory=dict)  # newest heartbeat known
    excluded: dict[str, str] = field(default_factory=dict)
    ejected: dict[str, float] = field(default_factory=dict)

    def declared(self, tool_id: str) -> list[str]:
        ops = self.tools[tool_id].capabilities.get("operations")
        return [op for op in ops if isinstance(op, str)] if isinstance(ops, list) else []

    def has_endpoint(self, tool_id: str, op: str) -> bool:
        return bool(self.tools[tool_id].endpoints.get(op))

    def live(self, tool_id: str) -> bool:
        beat = self.beat[tool_id]
        return beat is not None and beat + TTL > self.now

    def is_ejected(self, tool_id: str) -> bool:
        return self.ejected.get(tool_id, float("-inf")) > self.now

    def verdict(self, tool_id: str, op: str) -> str:
        if not self.live(tool_id):
            return "stale"
        if tool_id in self.excluded:
            return "critical" if self.excluded[tool_id] == CRITICAL_REASON else "excluded"
        if self.is_ejected(tool_id):
            return "ejected"
        if not self.has_endpoint(tool_id, op):
            return "no_endpoint"
        return "routable"

    def verdicts(self, op: str) -> dict[str, str]:
        return {t: self.verdict(t, op) for t in self.tools if op in self.declared(t)}

    def routable(self, op: str) -> set[str]:
        return {t for t, v in self.verdicts(op).items() if v == "routable"}

    def fallback(self, op: str) -> set[str]:
        """What a pick may return when nothing is routable (a set: ties are allowed)."""
        probes = {
            t: self.ejected[t]
            for t, v in self.verdicts(op).items()
            if v == "ejected" and self.has_endpoint(t, op)
        }
        if probes:
            first = min(probes.values())
            return {t for t, until in probes.items() if until == first}
        bare = sorted(
            t
            for t in self.tools
            if op in self.declared(t)
            and not self.has_endpoint(t, op)
            and self.live(t)
            and t not in self.excluded
        )
        return set(bare[:1])


def registration(
    tool_id: str, ops: Any, endpoints: dict[str, str], beat: float | None
) -> ModelToolRegistration:
    capabilities: dict[str, Any] = {} if ops is None else {"operations": ops}
    return ModelToolRegistration(
        id=uuid.uuid4(),
        tool_id=tool_id,
        node_type=NodeType.EFFECT,
        capabilities=capabilities,
        endpoints=endpoints,
        last_heartbeat=datetime.fromtimestamp(beat, UTC) if beat is not None else None,
    )


def newer(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def apply(index: ToolIndex, clock: DbClock, ref: Reference, event: tuple[Any, ...]) -> None:
    kind = event[0]
    if kind == "put":
        (tool_id, ops, endpoints, offset), as_row = event[1], event[2]
        beat = ref.now + offset if offset is not None else None
        model = registration(tool_id, ops, endpoints, beat)
        if as_row:  # the initial load's path: routing columns only
            index.put(tool_id, model.capabilities.get("operations"), endpoints, beat)
        else:  # the change feed's path
            index.upsert(model)
        ref.beat[tool_id] = newer(ref.beat.get(tool_id), beat)
        ref.tools[tool_id] = model
    elif kind == "heartbeat":
        _, tool_id, offset, exact = event
        assert index.heartbeat(tool_id, ref.now + offset, exact=exact) is (tool_id in ref.tools)
        if tool_id in ref.tools:
            beat = ref.now + offset
            ref.beat[tool_id] = beat if exact else newer(ref.beat[tool_id], beat)
    elif kind == "remove":
        assert index.remove(event[1]) is (event[1] in ref.tools)
        ref.tools.pop(event[1], None)
        ref.beat.pop(event[1], None)
        ref.ejected.pop(event[1], None)
    elif kind == "exclude":
        index.set_excluded(event[1], event[2])
        ref.excluded[event[1]] = event[2]
    elif kind == "clear":
        assert index.clear_excluded(event[1]) is (event[1] in ref.excluded)
        ref.excluded.pop(event[1], None)
    elif kind == "eject":
        index.eject(event[1], event[2] + 0.5)
        if event[1] in ref.tools:
            ref.ejected[event[1]] = ref.now + event[2] + 0.5
    elif kind == "restore":
        restored = index.restore(event[1])
        assert restored is (event[1] in ref.ejected)
        ref.ejected.pop(event[1], None)
    else:
        ref.now += event[1]
        clock.sample(ref.now, time.monotonic())
    # An ejection that ended is forgotten by the index when it is next consulted.
    ref.ejected = {t: u for t, u in ref.ejected.items() if u > ref.now}


def check(index: ToolIndex, ref: Reference) -> None:
    assert index.tool_ids() == set(ref.tools)
    for op in [*OPS, "unknown"]:
        expected = ref.routable(op)
        assert {t.tool_id for t in index.routable(op)} == expected, op
        explanation = index.explain_routing(op, limit=100)
        verdicts = ref.verdicts(op)
        assert (explanation.declared, explanation.routable) == (len(verdicts), len(expected))
        assert {v.tool_id: v.reason for v in explanation.tools} == verdicts, op
        tool = index.pick(op)
        if expected:
            assert tool is not None and tool.tool_id in expected, op
        else:
            fallback = ref.fallback(op)
            if fallback:
                assert tool is not None and tool.tool_id in fallback, op
            else:
                assert tool is None, op
        if tool is not None:
            url = ref.tools[tool.tool_id].endpoints.get(op) or None
            assert tool.endpoint(op) == url, (op, tool)
    for tool_id, model in ref.tools.items():
        indexed = index.get(tool_id)
        assert indexed is not None
        for op, url in model.endpoints.items():
            if op in indexed.operations:
                assert indexed.endpoint(op) == (url or None), (tool_id, op)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=10, max_size=80), st.integers(0, 2**32))
def test_the_compact_index_routes_as_the_reference(steps: list[tuple[Any, ...]], seed: int) -> None:
    clock = DbClock()
    clock.sample(T0, time.monotonic())
    index = ToolIndex(clock, TTL, PowerOfTwoBalancer(random.Random(seed)))
    ref = Reference()
    for event in steps:
        apply(index, clock, ref, event)
        check(index, ref)
