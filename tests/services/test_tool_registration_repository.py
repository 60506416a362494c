"""ToolRegistrationRepository against a real PostgreSQL: results, errors, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from omninode_bridge.errors import (
    OmniNodeBridgeError,
    ToolAlreadyRegisteredError,
    ValidationFailedError,
)
from omninode_bridge.models import (
    ModelToolRegistrationCreate,
    ModelToolRegistrationUpdate,
    NodeType,
)
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.models.test_registration import BAD_INPUT, GOOD
from tests.support import connection, registration


async def count_rows(client: PostgresClient) -> int:
    return int(await client.fetchval("SELECT count(*) FROM tool_registrations"))


async def count_events(client: PostgresClient) -> int:
    return int(await client.fetchval("SELECT count(*) FROM tool_registration_events"))


async def test_create_returns_the_stored_row(repository: ToolRegistrationRepository) -> None:
    created = await repository.create_registration(ModelToolRegistrationCreate(**GOOD))
    assert isinstance(created.id, uuid.UUID)
    assert created.id.version == 4
    assert created.tool_id == GOOD["tool_id"]
    assert created.node_type is NodeType.EFFECT
    assert created.capabilities == GOOD["capabilities"]
    assert created.endpoints == GOOD["endpoints"]
    assert created.health_endpoint == GOOD["health_endpoint"]
    assert created.last_heartbeat is not None, "registration counts as the first heartbeat"
    assert created.last_heartbeat.tzinfo is UTC
    assert created.registered_at == created.last_heartbeat
    fetched = await repository.get_registration(GOOD["tool_id"])
    assert fetched == created


async def test_duplicate_tool_id_names_it_and_writes_nothing(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registration(registration("dup-tool"))
    rows, events = await count_rows(repository.client), await count_events(repository.client)
    with pytest.raises(ToolAlreadyRegisteredError, match="'dup-tool'"):
        await repository.create_registration(registration("dup-tool", node_type="effect"))
    assert await count_rows(repository.client) == rows
    assert await count_events(repository.client) == events
    assert (await repository.get_registration("dup-tool")).node_type is NodeType.COMPUTE  # type: ignore[union-attr]


async def test_absent_is_none_or_false(repository: ToolRegistrationRepository) -> None:
    assert await repository.get_registration("nope") is None
    assert (
        await repository.update_registration("nope", ModelToolRegistrationUpdate(metadata={}))
        is None
    )
    assert await repository.update_heartbeat("nope") is False
    assert await repository.delete_registration("nope") is False
    # An id that could never be registered is simply absent, not an error.
    assert await repository.get_registration("x' OR '1'='1") is None
    assert await repository.get_registration("") is None


async def test_update_replaces_jsonb_fields_and_keeps_the_rest(
    repository: ToolRegistrationRepository,
) -> None:
    created = await repository.create_registration(ModelToolRegistrationCreate(**GOOD))
    new_caps = {
        "operations": ["stamp", "validate", "hash", "batch_stamp"],
        "max_file_size": 20971520,
    }
    updated = await repository.update_registration(
        GOOD["tool_id"],
        ModelToolRegistrationUpdate(capabilities=new_caps, metadata={"version": "1.1.0"}),
    )
    assert updated is not None
    assert updated.capabilities == new_caps
    assert updated.metadata == {"version": "1.1.0"}
    assert updated.endpoints == created.endpoints
    assert updated.health_endpoint == created.health_endpoint
    assert updated.id == created.id
    assert updated.updated_at is not None and created.updated_at is not None
    assert updated.updated_at > created.updated_at
    again = await repository.get_registration(GOOD["tool_id"])
    assert again == updated


async def test_update_can_clear_health_endpoint_and_change_node_type(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registration(ModelToolRegistrationCreate(**GOOD))
    updated = await repository.update_registration(
        GOOD["tool_id"], ModelToolRegistrationUpdate(health_endpoint=None, node_type="REDUCER")
    )
    assert updated is not None
    assert updated.health_endpoint is None
    assert updated.node_type is NodeType.REDUCER


async def test_empty_update_writes_nothing(repository: ToolRegistrationRepository) -> None:
    created = await repository.create_registration(registration("quiet"))
    events = await count_events(repository.client)
    same = await repository.update_registration("quiet", ModelToolRegistrationUpdate())
    assert same == created
    assert await count_events(repository.client) == events


async def test_heartbeat_uses_database_clock_and_explicit_times(
    repository: ToolRegistrationRepository,
) -> None:
    created = await repository.create_registration(registration("beat"))
    past = datetime.now(UTC) - timedelta(hours=2)
    assert await repository.update_heartbeat("beat", past) is True
    stale = await repository.get_registration("beat")
    assert stale is not None and stale.last_heartbeat == past
    assert not stale.is_healthy(300)
    assert await repository.update_heartbeat("beat") is True
    fresh = await repository.get_registration("beat")
    assert fresh is not None and fresh.last_heartbeat is not None
    assert created.last_heartbeat is not None
    assert fresh.last_heartbeat > created.last_heartbeat
    assert fresh.heartbeat_age_seconds is not None and fresh.heartbeat_age_seconds < 60


async def test_heartbeat_in_the_future_is_rejected(repository: ToolRegistrationRepository) -> None:
    await repository.create_registration(registration("future"))
    before = await repository.get_registration("future")
    with pytest.raises(ValidationFailedError, match="heartbeat_time"):
        await repository.update_heartbeat("future", datetime.now(UTC) + timedelta(minutes=5))
    assert await repository.get_registration("future") == before
    # Slightly ahead (clock skew within a minute) is accepted.
    assert await repository.update_heartbeat("future", datetime.now(UTC) + timedelta(seconds=20))


async def test_heartbeats_are_not_change_events(repository: ToolRegistrationRepository) -> None:
    await repository.create_registration(registration("hb"))
    events = await count_events(repository.client)
    await repository.update_heartbeat("hb")
    assert await repository.update_heartbeats(["hb", "ghost"]) == ["ghost"]
    assert await count_events(repository.client) == events


async def test_update_heartbeats_reports_unknown_ids_in_order(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registrations([registration(f"t{i}") for i in range(5)])
    past = datetime.now(UTC) - timedelta(hours=1)
    missing = await repository.update_heartbeats(["t0", "x1", "t3", "x0", "t0"], past)
    assert missing == ["x1", "x0"]
    rows = {t.tool_id: t.last_heartbeat for t in await repository.list_all_registrations()}
    assert rows["t0"] == past and rows["t3"] == past
    assert rows["t1"] != past
    assert await repository.update_heartbeats([]) == []
    with pytest.raises(ValidationFailedError, match="tool_ids"):
        await repository.update_heartbeats("t0")


async def test_healthy_tools_compare_against_the_database_clock(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registrations(
        [registration("alive"), registration("dead"), registration("borderline")]
    )
    await repository.update_heartbeat("dead", datetime.now(UTC) - timedelta(seconds=301))
    await repository.update_heartbeat("borderline", datetime.now(UTC) - timedelta(seconds=200))
    healthy = [t.tool_id for t in await repository.get_healthy_tools(max_age_seconds=300)]
    assert healthy == ["alive", "borderline"]
    assert [t.tool_id for t in await repository.get_healthy_tools(100)] == ["alive"]
    with pytest.raises(ValidationFailedError, match="max_age_seconds"):
        await repository.get_healthy_tools(0)


async def test_list_filters_by_node_type(repository: ToolRegistrationRepository) -> None:
    await repository.create_registrations(
        [
            registration("c1"),
            registration("e1", node_type="effect"),
            registration("c2"),
            registration("o1", node_type="orchestrator"),
        ]
    )
    assert [t.tool_id for t in await repository.list_all_registrations()] == [
        "c1",
        "c2",
        "e1",
        "o1",
    ]
    assert [t.tool_id for t in await repository.list_all_registrations("compute")] == ["c1", "c2"]
    assert [t.tool_id for t in await repository.list_all_registrations(node_type="EFFECT")] == [
        "e1"
    ]
    assert await repository.list_all_registrations(NodeType.REDUCER) == []
    assert await repository.count_registrations() == 4
    assert await repository.count_registrations("compute") == 2
    with pytest.raises(ValidationFailedError, match="node_type"):
        await repository.list_all_registrations("gateway")


async def test_find_by_capability_is_containment(repository: ToolRegistrationRepository) -> None:
    await repository.create_registrations(
        [
            registration(
                "both", capabilities={"operations": ["stamp", "validate", "hash"], "tier": "gold"}
            ),
            registration("stamp-only", capabilities={"operations": ["stamp"], "tier": "silver"}),
            registration("none", capabilities={"tier": "gold", "max": 5}),
        ]
    )
    found = await repository.find_by_capability("operations", ["stamp", "validate"])
    assert [t.tool_id for t in found] == ["both"]
    assert [t.tool_id for t in await repository.find_by_capability("operations", ["stamp"])] == [
        "both",
        "stamp-only",
    ]
    assert [t.tool_id for t in await repository.find_by_capability("tier", "gold")] == [
        "both",
        "none",
    ]
    assert [t.tool_id for t in await repository.find_by_capability("max", 5)] == ["none"]
    assert await repository.find_by_capability("max", 6) == []
    assert await repository.find_by_capability("operations", ["fly"]) == []


async def test_find_by_capability_treats_injection_as_data(
    repository: ToolRegistrationRepository,
) -> None:
    evil = "'; DROP TABLE tool_registrations; --"
    await repository.create_registration(
        registration("evil", capabilities={evil: evil, "ops": [evil]})
    )
    assert [t.tool_id for t in await repository.find_by_capability(evil, evil)] == ["evil"]
    assert [t.tool_id for t in await repository.find_by_capability("ops", [evil])] == ["evil"]
    assert await count_rows(repository.client) == 1
    with pytest.raises(ValidationFailedError, match="capability_value"):
        await repository.find_by_capability("ops", "a\x00b")


async def test_unicode_and_injection_round_trip_literally(
    repository: ToolRegistrationRepository,
) -> None:
    values = {
        "emoji": "🛠️🔧",
        "rtl": "مرحبا",
        "cjk": "工具注册",
        "quotes": 'it\'s "quoted" \\ backslash',
        "sql": "1; DELETE FROM tool_registrations WHERE 'a'='a",
        "json": '{"not": "parsed"}',
        "combining": "e\u0301",
        "newline": "a\nb\tc",
    }
    created = await repository.create_registration(
        registration("unicode:tool@v1", capabilities=values, metadata={"nested": [values]})
    )
    fetched = await repository.get_registration("unicode:tool@v1")
    assert fetched is not None
    assert fetched.capabilities == values
    assert fetched.metadata == {"nested": [values]}
    assert fetched == created


@pytest.mark.parametrize(
    ("overrides", "loc"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_rejected_before_any_write(
    repository: ToolRegistrationRepository, overrides: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    rows = await count_rows(repository.client)
    with pytest.raises(ValidationError) as info:
        await repository.create_registration(ModelToolRegistrationCreate(**{**GOOD, **overrides}))
    assert loc in [tuple(e["loc"]) for e in info.value.errors()]
    assert await count_rows(repository.client) == rows


REPOSITORY_RULES: list[tuple[str, str, dict[str, Any]]] = [
    ("find_tools", "where", {"where": "$.max_file_size >>> 5"}),
    ("find_tools", "cursor", {"cursor": "not-a-cursor"}),
    ("find_tools", "limit", {"limit": 0}),
    ("find_tools", "limit", {"limit": 100_000}),
    ("find_tools", "node_type", {"node_type": "gateway"}),
    ("find_tools", "max_age_seconds", {"max_age_seconds": -1}),
    ("find_tools", "capabilities", {"capabilities": {"a": "\x00"}}),
    ("find_tools", "where", {"where": '$.a == "\x00"'}),
    ("find_tools", "cursor", {"cursor": "eyJhZnRlciI6ICJcdTAwMDAifQ"}),
]


@pytest.mark.parametrize(
    ("method", "field", "kwargs"),
    REPOSITORY_RULES,
    ids=[f"{r[0]}-{r[1]}" for r in REPOSITORY_RULES],
)
async def test_repository_rules_name_the_field(
    repository: ToolRegistrationRepository, method: str, field: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationFailedError) as info:
        await getattr(repository, method)(**kwargs)
    assert field in [f.split(".")[0] for f, _ in info.value.errors], info.value.errors


async def test_twenty_concurrent_creates_of_one_id_one_wins(
    repository: ToolRegistrationRepository,
) -> None:
    results = await asyncio.gather(
        *(
            repository.create_registration(registration("contested", metadata={"n": i}))
            for i in range(20)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert all(isinstance(e, ToolAlreadyRegisteredError) for e in losers)
    assert await count_rows(repository.client) == 1
    stored = await repository.get_registration("contested")
    assert stored == winners[0]


async def test_five_hundred_concurrent_distinct_creates_all_stored(
    repository: ToolRegistrationRepository,
) -> None:
    ids = [f"tool-{i:04d}" for i in range(500)]
    created = await asyncio.gather(*(repository.create_registration(registration(i)) for i in ids))
    assert {c.tool_id for c in created} == set(ids)
    assert len({c.id for c in created}) == 500
    assert await count_rows(repository.client) == 500
    assert await count_events(repository.client) == 500


async def test_batch_is_one_transaction_all_or_nothing(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registration(registration("taken"))
    rows, events = await count_rows(repository.client), await count_events(repository.client)
    batch = [registration("new-1"), registration("taken"), registration("new-2")]
    with pytest.raises(ToolAlreadyRegisteredError) as info:
        await repository.create_registrations(batch)
    assert info.value.tool_ids == ["taken"]
    assert await count_rows(repository.client) == rows
    assert await count_events(repository.client) == events
    assert await repository.get_registration("new-1") is None


async def test_batch_with_repeated_id_names_it(repository: ToolRegistrationRepository) -> None:
    with pytest.raises(ValidationFailedError, match="'twice'"):
        await repository.create_registrations(
            [registration("twice"), registration("once"), registration("twice")]
        )
    assert await count_rows(repository.client) == 0


async def test_batch_returns_rows_in_input_order(repository: ToolRegistrationRepository) -> None:
    ids = ["zeta", "alpha", "mid"]
    created = await repository.create_registrations([registration(i) for i in ids])
    assert [c.tool_id for c in created] == ids
    assert all(c.id and c.last_heartbeat for c in created)
    assert await repository.create_registrations([]) == []


async def test_upsert_creates_then_replaces(repository: ToolRegistrationRepository) -> None:
    first, created = await repository.upsert_registration(registration("restarting"))
    assert created is True
    events = await count_events(repository.client)
    await repository.update_heartbeat("restarting", datetime.now(UTC) - timedelta(hours=1))
    same, created = await repository.upsert_registration(registration("restarting"))
    assert created is False
    assert same.id == first.id
    assert same.registered_at == first.registered_at
    assert same.updated_at == first.updated_at, "identical content is not a change"
    assert same.is_healthy(60), "re-registration is a heartbeat"
    assert await count_events(repository.client) == events, "identical content makes no event"
    changed, created = await repository.upsert_registration(
        registration("restarting", node_type="effect")
    )
    assert created is False
    assert changed.node_type is NodeType.EFFECT
    assert changed.endpoints == first.endpoints
    assert await count_events(repository.client) == events + 1


async def test_find_tools_combines_filters(repository: ToolRegistrationRepository) -> None:
    await repository.create_registrations(
        [
            registration(
                "big", capabilities={"operations": ["stamp"], "max_file_size": 20_000_000}
            ),
            registration("small", capabilities={"operations": ["stamp"], "max_file_size": 1000}),
            registration(
                "big-effect",
                node_type="effect",
                capabilities={"operations": ["stamp"], "max_file_size": 9_000_000},
            ),
            registration(
                "other", capabilities={"operations": ["hash"], "max_file_size": 50_000_000}
            ),
        ]
    )
    await repository.update_heartbeat("big", datetime.now(UTC) - timedelta(hours=1))
    page = await repository.find_tools(where="$.max_file_size >= 5000000")
    assert [t.tool_id for t in page.items] == ["big", "big-effect", "other"]
    assert page.next_cursor is None
    page = await repository.find_tools(
        capabilities={"operations": ["stamp"]}, where="$.max_file_size >= 5000000"
    )
    assert [t.tool_id for t in page.items] == ["big", "big-effect"]
    page = await repository.find_tools(
        capabilities={"operations": ["stamp"]},
        where="$.max_file_size >= 5000000",
        max_age_seconds=300,
    )
    assert [t.tool_id for t in page.items] == ["big-effect"]
    page = await repository.find_tools(capabilities={"operations": ["stamp"]}, node_type="compute")
    assert [t.tool_id for t in page.items] == ["big", "small"]


async def test_find_tools_pages_visit_every_tool_exactly_once(
    repository: ToolRegistrationRepository,
) -> None:
    ids = [f"page-{i:03d}" for i in range(257)]
    await repository.create_registrations([registration(i) for i in ids])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await repository.find_tools(limit=50, cursor=cursor)
        pages += 1
        seen.extend(t.tool_id for t in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids
    assert pages == 6


async def test_errors_are_in_the_one_tree(repository: ToolRegistrationRepository) -> None:
    with pytest.raises(OmniNodeBridgeError):
        await repository.find_tools(where="$$$")


async def test_owner_is_recorded_and_guards_deletion(
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registration(registration("owned"), owner="token:abc")
    await repository.upsert_registration(registration("upserted"), owner="source:etcd")
    await repository.create_registrations(
        [registration("b1"), registration("b2")], owner="token:xyz"
    )
    await repository.create_registration(registration("unowned"))
    assert await repository.get_owner("owned") == "token:abc"
    assert await repository.get_owner("unowned") is None
    assert await repository.get_owners(["owned", "upserted", "b1", "b2", "unowned", "ghost"]) == {
        "owned": "token:abc",
        "upserted": "source:etcd",
        "b1": "token:xyz",
        "b2": "token:xyz",
    }
    # A later upsert never changes the owner.
    await repository.upsert_registration(
        registration("upserted", node_type="effect"), owner="token:other"
    )
    assert await repository.get_owner("upserted") == "source:etcd"
    assert await repository.delete_registration("owned", owner="token:other") is False
    assert await repository.get_registration("owned") is not None
    assert await repository.delete_registration("unowned", owner="source:etcd") is False
    assert await repository.delete_registration("owned", owner="token:abc") is True
    assert await repository.get_owner("owned") is None


@pytest.mark.parametrize("tool_id", ["a\x00b", "", "x" * 300, "has space", "\ud800"])
async def test_impossible_ids_are_simply_absent(
    repository: ToolRegistrationRepository, tool_id: str
) -> None:
    await repository.create_registration(registration("real"))
    assert await repository.get_registration(tool_id) is None
    assert await repository.update_heartbeat(tool_id) is False
    assert await repository.delete_registration(tool_id) is False
    assert await repository.get_owner(tool_id) is None
    assert await repository.update_heartbeats([tool_id, "real"]) == [tool_id]
    assert await repository.existing_tool_ids([tool_id, "real"]) == {"real"}
    assert (
        await repository.update_registration(tool_id, ModelToolRegistrationUpdate(metadata={}))
        is None
    )


async def test_a_replace_sees_the_owner_of_a_row_created_after_it_began(
    repository: ToolRegistrationRepository, db_dsn: str
) -> None:
    """A creator's transaction holds a new registration and its owner, uncommitted; an
    owner-checked replace by the same owner starts (its snapshot lacks both), waits on the
    row, and goes on when the creator commits. It replaces the row it then locks, and must
    judge that row's owner as committed with it, not as its snapshot saw it (nobody): it
    was refused, and two requests of one token racing on one id got a 403."""
    tool_id, owner = "created-meanwhile", "team-a"
    async with connection(db_dsn) as creator:
        transaction = creator.transaction()
        await transaction.start()
        await creator.execute(
            "INSERT INTO tool_registrations (tool_id, node_type) VALUES ($1, 'effect')", tool_id
        )
        await creator.execute(
            "INSERT INTO tool_owners (tool_id, owner) VALUES ($1, $2)", tool_id, owner
        )
        replace = asyncio.create_task(
            repository.upsert_registration(registration(tool_id), owner=owner, owned_only=True)
        )
        async with connection(db_dsn) as observer:  # until the replace waits on the row
            for _ in range(500):
                waiting = await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the replace never waited on the creator's row"
        await transaction.commit()
    replaced, created = await asyncio.wait_for(replace, timeout=10)
    assert (replaced.tool_id, created) == (tool_id, False)
