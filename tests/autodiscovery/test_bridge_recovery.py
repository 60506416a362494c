"""The bridge across restarts, compaction and an etcd outage: nothing missed, nothing lost."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aetcd
import pytest

from omninode_bridge.autodiscovery import BridgeMetrics, DiscoveryBridge
from omninode_bridge.models import ChangeKind
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.autodiscovery.etcd_server import EtcdServer
from tests.autodiscovery.helpers import Bridges, metric, registration_value, wait_until
from tests.support import SwitchableProxy, base_settings


async def _ids(repository: ToolRegistrationRepository) -> dict[str, object]:
    return {t.tool_id: t.id for t in await repository.list_all_registrations()}


async def _until_ids(repository: ToolRegistrationRepository, expected: set[str]) -> None:
    async def matches() -> bool:
        return set(await _ids(repository)) == expected

    await wait_until(matches)


async def _changes_while_away(client: aetcd.Client, prefix: str) -> None:
    """While no bridge follows: one key added, one changed, one deleted (last, so that
    seeing it gone means a bridge that follows in order has applied all three)."""
    await client.put(f"{prefix}d".encode(), registration_value("d"))
    await client.put(f"{prefix}c".encode(), registration_value("c", capabilities={"v": 2}))
    await client.delete(f"{prefix}b".encode())


async def _following_abc(
    bridges: Bridges,
    client: aetcd.Client,
    repository: ToolRegistrationRepository,
    **options: Any,
) -> tuple[DiscoveryBridge, BridgeMetrics]:
    """A new bridge (``options`` as :meth:`Bridges.make`'s) and its metrics, once it has
    registered a, b and c, put in etcd on a 60 s lease."""
    metrics = BridgeMetrics()
    bridge = await bridges.run(metrics=metrics, **options)
    lease = await client.lease(60)
    for tool_id in "abc":
        await client.put(f"{bridges.prefix}{tool_id}".encode(), registration_value(tool_id), lease)
    await _until_ids(repository, {"a", "b", "c"})
    return bridge, metrics


async def test_a_new_bridge_reconciles_what_changed_while_none_ran(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    first, _ = await _following_abc(bridges, etcd_client, repository)
    ids = await _ids(repository)
    await bridges.stop(first)
    await _changes_while_away(etcd_client, bridges.prefix)
    cursor = await repository.feed.head_cursor()

    second = await bridges.run()  # a fresh process: it lists and reconciles at start
    await _until_ids(repository, {"a", "c", "d"})
    assert (await repository.get_registration("c")).capabilities == {"v": 2}  # type: ignore[union-attr]
    after = await _ids(repository)
    assert after["a"] == ids["a"] and after["c"] == ids["c"]  # kept, never re-created
    events = [(e.kind, e.tool_id) for e in await repository.changes(cursor)]
    assert sorted(events) == [
        (ChangeKind.CREATED, "d"),
        (ChangeKind.DELETED, "b"),
        (ChangeKind.UPDATED, "c"),
    ]
    deleted = [e for e in await repository.changes(cursor) if e.kind is ChangeKind.DELETED]
    assert deleted[0].reason == f"absent from etcd:{bridges.prefix} at resync"
    label = {"source": f"etcd:{bridges.prefix}"}
    assert (
        metric(second.metrics, "toolreg_autodiscovery_resyncs_total", cause="start", **label) == 1
    )


async def test_a_resumed_bridge_replays_from_its_last_revision(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    bridge, metrics = await _following_abc(bridges, etcd_client, repository)
    await bridges.stop(bridge)
    await _changes_while_away(etcd_client, bridges.prefix)

    await bridges.start(bridge)  # the same bridge: it resumes from its revision
    await _until_ids(repository, {"a", "c", "d"})
    label = {"source": f"etcd:{bridges.prefix}"}
    assert metric(metrics, "toolreg_autodiscovery_resyncs_total", cause="start", **label) == 1
    assert (
        metric(metrics, "toolreg_autodiscovery_resyncs_total", cause="history_lost", **label) == 0
    )
    assert (await repository.get_registration("c")).capabilities == {"v": 2}  # type: ignore[union-attr]


async def test_compaction_past_the_bridge_revision_triggers_a_correct_resync(
    bridges: Bridges, etcd_client: aetcd.Client, repository: ToolRegistrationRepository
) -> None:
    bridge, metrics = await _following_abc(bridges, etcd_client, repository)
    ids = await _ids(repository)
    behind = bridge.revision
    await bridges.stop(bridge)
    await _changes_while_away(etcd_client, bridges.prefix)
    latest = await etcd_client.put(b"/unrelated/key", b"moves the revision on")
    await etcd_client.compact(latest.header.revision)
    assert behind is not None and behind < latest.header.revision
    cursor = await repository.feed.head_cursor()

    await bridges.start(bridge)  # resumes from `behind`: compacted away
    label = {"source": f"etcd:{bridges.prefix}"}

    async def resynced() -> bool:
        return metric(metrics, "toolreg_autodiscovery_resyncs_total",
                      cause="history_lost", **label) == 1  # fmt: skip

    await wait_until(resynced)
    await _until_ids(repository, {"a", "c", "d"})
    after = await _ids(repository)
    assert after["a"] == ids["a"] and after["c"] == ids["c"]
    events = [(e.kind, e.tool_id) for e in await repository.changes(cursor)]
    assert sorted(events) == [
        (ChangeKind.CREATED, "d"),
        (ChangeKind.DELETED, "b"),
        (ChangeKind.UPDATED, "c"),
    ]
    assert bridge.revision is not None and bridge.revision >= latest.header.revision
    # It follows etcd again after the resync.
    await etcd_client.put(f"{bridges.prefix}e".encode(), registration_value("e"))
    await _until_ids(repository, {"a", "c", "d", "e"})


async def test_an_etcd_outage_removes_nothing_and_later_changes_apply(
    bridges: Bridges,
    etcd: EtcdServer,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
) -> None:
    _, metrics = await _following_abc(bridges, etcd_client, repository, refresh_interval=0.2)
    before = await repository.list_all_registrations()
    label = {"source": f"etcd:{bridges.prefix}"}

    await etcd.stop()

    async def noticed() -> bool:
        return (
            metric(metrics, "toolreg_autodiscovery_connected", **label) == 0
            and metric(metrics, "toolreg_autodiscovery_failures_total", side="source", **label) >= 3
        )

    await wait_until(noticed)  # several failed retries
    await asyncio.sleep(0.5)
    during = await repository.list_all_registrations()
    assert [(t.tool_id, t.id, t.updated_at) for t in during] == [
        (t.tool_id, t.id, t.updated_at) for t in before
    ]
    # Heartbeats go on meanwhile: the tools stay healthy, not just present.
    assert all(d.last_heartbeat > b.last_heartbeat for d, b in zip(during, before, strict=True))  # type: ignore[operator]

    await etcd.start()  # same data: the keys and their lease are still there
    await etcd_client.delete(f"{bridges.prefix}a".encode())
    await etcd_client.put(f"{bridges.prefix}d".encode(), registration_value("d"))
    await _until_ids(repository, {"b", "c", "d"})
    assert metric(metrics, "toolreg_autodiscovery_connected", **label) == 1
    assert (
        metric(metrics, "toolreg_autodiscovery_resyncs_total", cause="history_lost", **label) == 0
    )


async def test_a_database_outage_backs_off_and_the_changes_apply_after(
    etcd: EtcdServer,
    etcd_client: aetcd.Client,
    prefix: str,
    db_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch comes back at once while the database is away: that must not reset the
    backoff, or the bridge replays and fails in a tight loop, logging each time."""
    proxy = SwitchableProxy(db_dsn)
    await proxy.up()
    async with PostgresClient(base_settings(), dsn=proxy.dsn) as client:
        repository = ToolRegistrationRepository(client)
        bridges = Bridges(etcd, repository, prefix)
        try:
            metrics = BridgeMetrics()
            await bridges.run(metrics=metrics)  # backoff 0.05 s doubling to 0.3 s
            await etcd_client.put(f"{prefix}a".encode(), registration_value("a"))
            await _until_ids(repository, {"a"})
            caplog.set_level(logging.INFO, logger="omninode_bridge.autodiscovery.bridge")
            await proxy.down()
            await etcd_client.put(f"{prefix}b".encode(), registration_value("b"))
            label = {"source": f"etcd:{prefix}", "side": "registry"}

            async def failed_five_times() -> bool:
                return metric(metrics, "toolreg_autodiscovery_failures_total", **label) >= 5

            await wait_until(failed_five_times)
            retries = [r for r in caplog.records if "retrying in" in str(r.msg)]
            delays = [r.args[1] for r in retries if isinstance(r.args, tuple)]
            assert delays[:5] == [0.05, 0.1, 0.2, 0.3, 0.3], delays

            await proxy.up()
            await _until_ids(repository, {"a", "b"})
        finally:
            await bridges.aclose()
            await proxy.down()
