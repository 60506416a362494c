"""The in-memory index, balancer and ejection policy, driven by an explicit database clock."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime

import pytest

from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.services.discovery.balancer import PowerOfTwoBalancer
from omninode_bridge.services.discovery.clock import DbClock
from omninode_bridge.services.discovery.ejection import EjectionPolicy
from omninode_bridge.services.discovery.index import ToolIndex
from omninode_bridge.services.discovery.registrations import RegistrationCache
from omninode_bridge.services.tool_registration_repository import ToolRegistrationRepository

TTL = 10.0
T0 = 1_700_000_000.0  # database epoch seconds at the start of every test


def at(clock: DbClock, db_time: float) -> None:
    """Make ``clock.now()`` read ``db_time`` (plus the few microseconds until it is read)."""
    clock.sample(db_time, time.monotonic())


def reg(
    tool_id: str,
    beat: float | None = T0,
    operations: list[str] | None = None,
    endpoints: dict[str, str] | None = None,
) -> ModelToolRegistration:
    operations = ["stamp"] if operations is None else operations
    if endpoints is None:
        endpoints = {op: f"http://{tool_id}.local/{op}" for op in operations}
    return ModelToolRegistration(
        id=uuid.uuid4(),
        tool_id=tool_id,
        node_type=NodeType.EFFECT,
        capabilities={"operations": operations},
        endpoints=endpoints,
        last_heartbeat=datetime.fromtimestamp(beat, UTC) if beat is not None else None,
    )


@pytest.fixture
def clock() -> DbClock:
    clock = DbClock()
    at(clock, T0)
    return clock


@pytest.fixture
def index(clock: DbClock) -> ToolIndex:
    return ToolIndex(clock, TTL, PowerOfTwoBalancer(random.Random(1)))


def picks(index: ToolIndex, operation: str = "stamp", n: int = 50) -> set[str]:
    chosen = set()
    for _ in range(n):
        tool = index.pick(operation)
        if tool is not None:
            chosen.add(tool.tool_id)
    return chosen


def test_routable_means_declared_with_endpoint_and_fresh(index: ToolIndex) -> None:
    index.upsert(reg("ok"))
    index.upsert(reg("other-op", operations=["hash"]))
    index.upsert(reg("endpoint-only", operations=[], endpoints={"stamp": "http://x/stamp"}))
    index.upsert(reg("never-beat", beat=None))
    index.upsert(reg("stale", beat=T0 - TTL - 1))
    index.upsert(
        ModelToolRegistration(
            id=uuid.uuid4(),
            tool_id="scalar-ops",
            node_type=NodeType.EFFECT,
            capabilities={"operations": "stamp"},
            endpoints={"stamp": "http://s/stamp"},
            last_heartbeat=datetime.fromtimestamp(T0, UTC),
        )
    )
    assert picks(index) == {"ok"}
    assert [t.tool_id for t in index.routable("stamp")] == ["ok"]
    assert len(index) == 6


def test_a_tool_drops_out_exactly_at_its_ttl(index: ToolIndex, clock: DbClock) -> None:
    index.upsert(reg("a", beat=T0))
    at(clock, T0 + TTL - 0.01)
    assert picks(index) == {"a"}
    at(clock, T0 + TTL + 0.001)
    assert index.pick("stamp") is None
    assert "1 stale (no heartbeat within 10s) (a)" in index.explain("stamp")
    # A heartbeat brings it back; an older one changes nothing.
    assert index.heartbeat("a", T0 + TTL)
    assert picks(index) == {"a"}
    assert index.heartbeat("a", T0)
    assert picks(index) == {"a"}
    assert index.heartbeat("unknown", T0) is False


def test_an_exact_heartbeat_may_move_backwards(index: ToolIndex, clock: DbClock) -> None:
    index.upsert(reg("a", beat=T0))
    index.heartbeat("a", T0 - TTL - 5, exact=True)
    assert index.pick("stamp") is None
    index.heartbeat("a", T0 - 1, exact=True)
    at(clock, T0 + TTL - 1.5)
    assert picks(index) == {"a"}
    at(clock, T0 + TTL - 0.5)
    assert index.pick("stamp") is None


async def test_registration_carries_the_newest_heartbeat(
    index: ToolIndex, repository: ToolRegistrationRepository
) -> None:
    cache = RegistrationCache(repository, TTL)
    cache.update(reg("a", beat=T0 - 5))
    index.upsert(reg("a", beat=T0 - 5))
    index.heartbeat("a", T0 - 1)
    tool = index.pick("stamp")
    assert tool is not None
    registration = await cache.get(tool)
    assert registration is not None
    assert registration.last_heartbeat is not None
    assert registration.last_heartbeat.timestamp() == pytest.approx(T0 - 1)
    assert await cache.get(tool) is registration  # copied once per heartbeat
    assert (cache.hits, cache.misses) == (2, 0)
    assert await cache.get(tool._replace(tool_id="not-registered")) is None  # one query


def test_upsert_replaces_and_keeps_the_newer_heartbeat(index: ToolIndex, clock: DbClock) -> None:
    index.upsert(reg("a", beat=T0))
    index.upsert(reg("a", beat=T0 - 8, operations=["hash"]))
    assert index.pick("stamp") is None
    at(clock, T0 + TTL - 1)
    assert picks(index, "hash") == {"a"}
    assert index.remove("a") is True
    assert index.remove("a") is False
    assert index.pick("hash") is None
    assert index.explain("hash") == "no registered tool lists it in capabilities.operations"


def test_exclusion_outlives_registrations(index: ToolIndex) -> None:
    index.set_excluded("a", "critical")
    index.upsert(reg("a"))
    index.upsert(reg("b"))
    assert picks(index) == {"b"}
    index.remove("b")
    assert index.pick("stamp") is None
    assert "1 excluded (a: critical)" in index.explain("stamp")
    assert index.clear_excluded("a") is True
    assert picks(index) == {"a"}
    assert index.excluded() == {}


def test_ejection_ends_by_time_or_on_restore(index: ToolIndex, clock: DbClock) -> None:
    index.upsert(reg("a"))
    index.upsert(reg("b"))
    index.eject("a", 2.0)
    assert picks(index) == {"b"}
    assert set(index.ejected()) == {"a"}
    at(clock, T0 + 2.01)
    assert picks(index) == {"a", "b"}
    index.eject("b", 5.0)
    assert index.restore("b") is True
    assert index.restore("b") is False
    assert picks(index) == {"a", "b"}


def test_when_all_are_ejected_the_first_due_back_is_probed(index: ToolIndex) -> None:
    index.upsert(reg("a"))
    index.upsert(reg("b"))
    index.eject("a", 5.0)
    index.eject("b", 1.0)
    tool = index.pick("stamp")
    assert tool is not None and tool.tool_id == "b"
    tool = index.pick("stamp", avoid={"b"})
    assert tool is not None and tool.tool_id == "a"
    assert index.pick("stamp", avoid={"a", "b"}) is None
    assert "2 ejected after failing to connect" in index.explain("stamp")


def test_a_live_tool_without_endpoint_is_the_last_resort(index: ToolIndex) -> None:
    index.upsert(reg("bare", endpoints={}))
    tool = index.pick("stamp")
    assert tool is not None and tool.tool_id == "bare"
    assert "1 without an endpoint for it (bare)" in index.explain("stamp")
    index.upsert(reg("full"))
    assert picks(index) == {"full"}


def test_retain_drops_what_a_reload_did_not_see(index: ToolIndex) -> None:
    for name in "abc":
        index.upsert(reg(name))
    assert sorted(index.retain({"b"})) == ["a", "c"]
    assert index.tool_ids() == {"b"}
    assert picks(index) == {"b"}


def test_never_a_stale_tool_under_random_churn(index: ToolIndex, clock: DbClock) -> None:
    """Against a brute-force model: every pick is fresh, routable and offers the operation."""
    rng = random.Random(42)
    ops = ["a", "b", "c", "d"]
    now = T0
    for step in range(3000):
        action = rng.random()
        tool_id = f"t{rng.randrange(40)}"
        if action < 0.3:
            chosen = rng.sample(ops, rng.randint(1, 3))
            index.upsert(reg(tool_id, beat=now - rng.random() * 12, operations=chosen))
        elif action < 0.55:
            index.heartbeat(tool_id, now - rng.random() * 3, exact=rng.random() < 0.2)
        elif action < 0.6:
            index.remove(tool_id)
        elif action < 0.65:
            index.eject(tool_id, rng.random() * 2)
        elif action < 0.68:
            index.set_excluded(tool_id, "x")
        elif action < 0.72:
            index.clear_excluded(tool_id)
        else:
            now += rng.random() * 0.5
            at(clock, now)
        op = rng.choice(ops)
        tool = index.pick(op)
        db_now = clock.now()
        expected = {
            t.tool_id
            for t in (index.get(i) for i in index.tool_ids())
            if t is not None
            and op in t.routed
            and t.expires_at > db_now
            and t.tool_id not in index.excluded()
            and t.tool_id not in index.ejected()
        }
        if tool is None:
            assert not expected, f"step {step}: nothing picked, yet {expected} are routable"
        elif expected:
            assert tool.tool_id in expected, f"step {step}: picked {tool.tool_id}"
        else:
            # Fallbacks only: an ejected probe or an endpointless tool, never a stale one.
            assert tool.expires_at > db_now - 0.01
            assert tool.tool_id not in index.excluded()


def test_balancer_prefers_fewer_in_flight() -> None:
    balancer = PowerOfTwoBalancer(random.Random(3))
    balancer.begin("busy")
    assert {balancer.choose(["busy", "idle"]) for _ in range(20)} == {"idle"}
    balancer.end("busy")
    chosen = [balancer.choose(["a", "b", "c", "d"]) for _ in range(4000)]
    assert all(900 <= chosen.count(x) <= 1100 for x in "abcd")
    balancer.begin("a")
    balancer.begin("a")
    balancer.begin("b")
    chosen = [balancer.choose(["a", "b", "c", "d"]) for _ in range(4000)]
    # "a" wins no draw, "b" only against "a": 1/6 of the time.
    assert chosen.count("a") == 0
    assert 500 <= chosen.count("b") <= 850
    assert balancer.choose(["a", "b"], avoid={"a", "b"}) is None
    assert balancer.choose(["a"], avoid={"a"}) is None
    assert balancer.choose([]) is None
    many = [f"t{i}" for i in range(100)]
    assert balancer.choose(many, avoid=set(many[:99])) == "t99"


def test_ejection_backoff_grows_and_is_capped() -> None:
    policy = EjectionPolicy(0.5, 4.0)
    assert [policy.failed("a") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.failures("a") == 6
    assert policy.succeeded("a") is True
    assert policy.succeeded("a") is False
    assert policy.failed("a") == 0.5
    for _ in range(200):
        policy.failed("b")
    assert policy.failed("b") == 4.0
    with pytest.raises(ValueError, match="base_seconds"):
        EjectionPolicy(2.0, 1.0)
