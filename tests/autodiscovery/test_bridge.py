"""DiscoveryBridge with a real etcd and a real PostgreSQL: announce, leave, skip, own."""

from __future__ import annotations

import asyncio
import logging
import time

import aetcd
import orjson
import pytest

from omninode_bridge.autodiscovery import (
    BridgeMetrics,
    DiscoveryBridge,
    EtcdSource,
    RemovalMode,
    bridges_from_settings,
)
from omninode_bridge.autodiscovery.bridge import EPOCH
from omninode_bridge.errors import DatabaseError
from omninode_bridge.models import ChangeKind, ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import Settings
from tests.autodiscovery.etcd_server import EtcdServer
from tests.autodiscovery.helpers import (
    WAIT,
    Bridges,
    metric,
    registration_value,
    until_metric,
    wait_until,
)

LOGGER = "omninode_bridge.autodiscovery.bridge"


async def _registered(repository: ToolRegistrationRepository, tool_id: str) -> float:
    async def present() -> bool:
        return await repository.get_registration(tool_id) is not None

    return await wait_until(present)


async def _gone(repository: ToolRegistrationRepository, tool_id: str) -> float:
    async def absent() -> bool:
        return await repository.get_registration(tool_id) is None

    return await wait_until(absent)


async def _delete_seen_at(client: aetcd.Client, key: bytes, trigger: asyncio.Future[None]) -> float:
    """Watch ``key`` and return when etcd announced its deletion (monotonic clock)."""
    watch = await client.watch(key, kind=aetcd.EventKind.DELETE)
    trigger.set_result(None)
    try:
        async with asyncio.timeout(WAIT):
            async for _ in watch:
                return time.monotonic()
    finally:
        await watch.cancel()
    raise AssertionError("the watch ended without a delete")


async def test_a_key_put_with_a_lease_is_registered_and_discoverable(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    bridge = await bridges.run()
    lease = await etcd_client.lease(30)
    await etcd_client.put(
        f"{bridges.prefix}search-1".encode(), registration_value("search-1"), lease
    )
    # tool_id may be left out: the key names the tool.
    body = orjson.loads(registration_value("x", node_type="Compute"))
    del body["tool_id"]
    await etcd_client.put(f"{bridges.prefix}calc-1".encode(), orjson.dumps(body), lease)
    await _registered(repository, "search-1")
    await _registered(repository, "calc-1")

    tool = await repository.get_registration("search-1")
    assert tool is not None
    assert tool.node_type == "effect"
    assert tool.endpoints == {"search": "http://127.0.0.1:9/search-1/search"}
    assert tool.heartbeat_age_seconds is not None and tool.heartbeat_age_seconds < 5
    found = await repository.find_by_capability("region", "eu")
    assert [t.tool_id for t in found] == ["calc-1", "search-1"]
    assert {t.tool_id for t in await repository.get_healthy_tools()} == {"calc-1", "search-1"}
    assert await repository.get_owner("search-1") == f"source:etcd:{bridges.prefix}"
    assert (await repository.get_registration("calc-1")).node_type == "compute"  # type: ignore[union-attr]
    source = f"etcd:{bridges.prefix}"
    name = "toolreg_autodiscovery_applied_total"
    await until_metric(bridge.metrics, name, 2, source=source, action="registered")
    await until_metric(bridge.metrics, "toolreg_autodiscovery_keys", 2, source=source)

    # A new value replaces the registration, keeping its id.
    await etcd_client.put(
        f"{bridges.prefix}search-1".encode(),
        registration_value("search-1", capabilities={"region": "us"}),
        lease,
    )

    async def moved() -> bool:
        tool = await repository.get_registration("search-1")
        return tool is not None and tool.capabilities == {"region": "us"}

    await wait_until(moved)
    assert (await repository.get_registration("search-1")).id == tool.id  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["revoked", "expired", "deleted"])
async def test_a_key_that_goes_removes_its_tool_within_two_seconds(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository, how: str
) -> None:
    await bridges.run()
    key = f"{bridges.prefix}leaving".encode()
    lease = await etcd_client.lease(1 if how == "expired" else 30)
    await etcd_client.put(key, registration_value("leaving"), lease)
    await _registered(repository, "leaving")
    cursor = await repository.feed.head_cursor()

    watching: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = asyncio.create_task(_delete_seen_at(etcd_client, key, watching))
    await watching
    if how == "revoked":
        await lease.revoke()
    elif how == "deleted":
        await etcd_client.delete(key)
    # "expired": the lease of one second is left to run out.
    deleted_at = await seen
    gone_at = await _gone(repository, "leaving")
    assert gone_at - deleted_at < 2.0

    events = await repository.changes(cursor)
    assert [(e.kind, e.tool_id) for e in events] == [(ChangeKind.DELETED, "leaving")]
    assert events[0].reason == ("etcd key deleted" if how == "deleted" else "etcd lease expired")


async def test_invalid_values_are_skipped_reported_and_never_stop_the_bridge(
    bridges: Bridges,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    bridge = await bridges.run()
    source = f"etcd:{bridges.prefix}"
    p = bridges.prefix
    await etcd_client.put(f"{p}kept".encode(), registration_value("kept"))
    await _registered(repository, "kept")
    before = await repository.get_registration("kept")
    bad = {
        f"{p}not-json": b"{not json",
        f"{p}not-object": b"[1, 2]",
        f"{p}bad-type": registration_value("bad-type", node_type="gateway"),
        f"{p}bad-url": registration_value("bad-url", endpoints={"search": "ftp://x/y"}),
        f"{p}other-id": registration_value("someone-else"),
        f"{p}bad id!": registration_value("bad id!"),
        f"{p}kept": registration_value("kept", metadata=[1]),  # an update gone wrong
    }
    for key, value in bad.items():
        await etcd_client.put(key.encode(), value)

    fields = ("value", "node_type", "endpoints", "tool_id", "metadata")

    def counted() -> dict[str, float]:
        name = "toolreg_autodiscovery_invalid_values_total"
        return {f: metric(bridge.metrics, name, source=source, field=f) for f in fields}

    async def all_counted() -> bool:
        return sum(counted().values()) == len(bad)

    await wait_until(all_counted)
    assert counted() == {"value": 2, "node_type": 1, "endpoints": 1, "tool_id": 2, "metadata": 1}
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    for key, field in [
        ("not-json", "value: is not valid JSON"),
        ("not-object", "value: must be a JSON object"),
        ("bad-type", "node_type:"),
        ("bad-url", "endpoints.search:"),
        ("other-id", "tool_id: 'someone-else' differs from the key's tool id 'other-id'"),
        ("bad id!", "tool_id:"),
        ("kept", "metadata:"),
    ]:
        assert any(f"key {p}{key}:" in line and field in line for line in lines), (key, lines)

    # Nothing partial was written, the old registration of "kept" stands, and
    # the bridge still follows etcd.
    assert [t.tool_id for t in await repository.list_all_registrations()] == ["kept"]
    assert await repository.get_registration("kept") == before
    await etcd_client.put(f"{p}after".encode(), registration_value("after"))
    await _registered(repository, "after")


async def test_an_invalid_value_is_reported_once_and_its_names_cannot_forge_log_lines(
    bridges: Bridges,
    etcd_client: aetcd.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    bridge = await bridges.run()
    source, p = f"etcd:{bridges.prefix}", bridges.prefix
    forged = "\n2026-01-01T00:00:00.000+00:00 INFO omninode_bridge: registered tool 'x'"
    await etcd_client.put(f"{p}key{forged}".encode(), registration_value(f"key{forged}"))
    extra = registration_value("extra", **{f"field{forged}": 1})  # an unknown top-level field
    await etcd_client.put(f"{p}extra".encode(), extra)
    name = "toolreg_autodiscovery_invalid_values_total"
    await until_metric(bridge.metrics, name, 1, source=source, field="tool_id")
    await until_metric(bridge.metrics, name, 1, source=source, field="value")
    assert metric(bridge.metrics, name, source=source, field=f"field{forged}") == 0  # bounded

    for _ in range(2):  # resyncs (compaction, restart) meet the same values again
        await bridge.resync("history_lost")
    await etcd_client.put(f"{p}extra".encode(), extra)  # the same value put again
    await etcd_client.put(f"{p}marker".encode(), registration_value("marker"))
    await until_metric(bridge.metrics, "toolreg_autodiscovery_applied_total", 1,
                       source=source, action="registered")  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    skipped = [line for line in lines if "skipped key" in line]
    assert len(skipped) == 2, skipped
    assert not any("\n" in line for line in lines), lines
    assert any(f"key {p}key\\u000a2026-01-01" in line for line in skipped), skipped
    assert metric(bridge.metrics, name, source=source, field="value") == 1

    await etcd_client.put(f"{p}extra".encode(), registration_value("extra", node_type="x"))
    await until_metric(bridge.metrics, name, 1, source=source, field="node_type")  # a new value


async def test_registrations_of_other_writers_are_never_changed_or_removed(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    http = ModelToolRegistrationCreate.model_validate(orjson.loads(registration_value("shared")))
    owned = await repository.create_registration(http, owner="token:0000")
    legacy = await repository.create_registration(http.model_copy(update={"tool_id": "legacy"}))
    bridge = await bridges.run()
    p = bridges.prefix
    for tool_id in ("shared", "legacy"):
        await etcd_client.put(
            f"{p}{tool_id}".encode(), registration_value(tool_id, node_type="reducer")
        )
    await etcd_client.put(f"{p}mine".encode(), registration_value("mine"))
    await _registered(repository, "mine")

    async def two_conflicts() -> bool:
        return (
            metric(bridge.metrics, "toolreg_autodiscovery_conflicts_total", source=f"etcd:{p}") == 2
        )

    await wait_until(two_conflicts)
    await bridge.resync("history_lost")  # meets the same two conflicts: nothing new
    assert await two_conflicts()
    assert await repository.get_registration("shared") == owned
    assert await repository.get_registration("legacy") == legacy
    for tool_id in ("shared", "legacy", "mine"):
        await etcd_client.delete(f"{p}{tool_id}".encode())
    await _gone(repository, "mine")
    assert await repository.get_registration("shared") == owned
    assert await repository.get_registration("legacy") == legacy
    assert await repository.get_owner("shared") == "token:0000"


async def test_mark_stale_mode_keeps_the_tool_but_makes_it_unhealthy(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    bridge = await bridges.run(mode=RemovalMode.MARK_STALE)
    key = f"{bridges.prefix}stale-me".encode()
    await etcd_client.put(key, registration_value("stale-me"))
    await _registered(repository, "stale-me")
    await etcd_client.delete(key)

    async def stale() -> bool:
        tool = await repository.get_registration("stale-me")
        return tool is not None and tool.last_heartbeat == EPOCH

    await wait_until(stale)
    assert await repository.get_healthy_tools() == []
    name = "toolreg_autodiscovery_applied_total"
    source = f"etcd:{bridges.prefix}"
    await until_metric(bridge.metrics, name, 1, source=source, action="marked_stale")
    # Announced again, it is healthy again.
    await etcd_client.put(key, registration_value("stale-me"))

    async def healthy() -> bool:
        return [t.tool_id for t in await repository.get_healthy_tools()] == ["stale-me"]

    await wait_until(healthy)


async def test_present_keys_keep_their_tools_healthy_and_registered(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    await bridges.run(refresh_interval=0.2)
    await etcd_client.put(f"{bridges.prefix}alive".encode(), registration_value("alive"))
    await _registered(repository, "alive")
    first = await repository.get_registration("alive")
    assert first is not None and first.last_heartbeat is not None

    async def refreshed() -> bool:
        tool = await repository.get_registration("alive")
        assert tool is not None and tool.last_heartbeat is not None
        return tool.last_heartbeat > first.last_heartbeat  # type: ignore[operator]

    await wait_until(refreshed)
    # Removed by someone else while its key exists: it comes back.
    assert await repository.delete_registration("alive", "admin cleanup")
    await _registered(repository, "alive")


async def test_bridges_from_settings_follow_the_configured_etcd(
    etcd: EtcdServer,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
    prefix: str,
) -> None:
    assert bridges_from_settings(Settings(etcd_endpoints=None), repository) == []
    settings = Settings(etcd_endpoints=etcd.url, etcd_prefix=prefix, ttl_seconds=30)
    metrics = BridgeMetrics()
    [bridge] = bridges_from_settings(settings, repository, metrics=metrics)
    assert bridge.owner == f"source:etcd:{prefix}"
    assert bridge.refresh_interval == 10
    task = asyncio.create_task(bridge.run())
    try:
        await etcd_client.put(f"{prefix}configured".encode(), registration_value("configured"))
        await _registered(repository, "configured")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (
        metrics.registry.get_sample_value(
            "toolreg_autodiscovery_connected", {"source": f"etcd:{prefix}"}
        )
        == 0
    )


async def test_an_error_that_is_no_outage_ends_the_run_with_that_error(
    etcd: EtcdServer, empty_db_dsn: str, test_settings: Settings, prefix: str
) -> None:
    async with PostgresClient(test_settings, dsn=empty_db_dsn) as client:  # no schema
        bridge = DiscoveryBridge(EtcdSource(etcd.url, prefix), ToolRegistrationRepository(client))
        with pytest.raises(DatabaseError, match="tool_"):
            await asyncio.wait_for(bridge.run(), WAIT)
