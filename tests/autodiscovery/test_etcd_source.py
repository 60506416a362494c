"""EtcdSource against a real etcd: listing, watching, reasons, compaction, outages."""

from __future__ import annotations

import asyncio
import time

import aetcd
import pytest

from omninode_bridge.autodiscovery import (
    EtcdEndpoint,
    EtcdSource,
    SourceEventKind,
    SourceHistoryLostError,
    SourceUnavailableError,
    parse_endpoints,
)
from omninode_bridge.autodiscovery.etcd import PAGE_SIZE
from omninode_bridge.errors import ConfigurationError
from tests.autodiscovery.etcd_server import EtcdServer, free_port
from tests.autodiscovery.helpers import WAIT


def test_parse_endpoints_accepts_urls_and_host_port() -> None:
    assert parse_endpoints("http://127.0.0.1:2379, 10.0.0.2 ,http://[::1]:4001") == [
        EtcdEndpoint("127.0.0.1", 2379),
        EtcdEndpoint("10.0.0.2", 2379),
        EtcdEndpoint("::1", 4001),
    ]
    assert str(EtcdEndpoint("::1", 4001)) == "http://[::1]:4001"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no etcd endpoint"),
        ("https://127.0.0.1:2379", "TLS"),
        ("http://root:s3cret@127.0.0.1:2379", "credentials"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("ftp://127.0.0.1:2379", "http://host:port"),
    ],
)
def test_parse_endpoints_rejects_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_endpoints(value, "--endpoints")
    assert str(caught.value).startswith("--endpoints")
    assert "s3cret" not in str(caught.value)


def test_prefix_must_fit_the_owner_column() -> None:
    with pytest.raises(ConfigurationError, match="TOOLREG_ETCD_PREFIX"):
        EtcdSource("http://127.0.0.1:2379", "/" + "p" * 300)
    with pytest.raises(ConfigurationError, match="TOOLREG_ETCD_PREFIX"):
        EtcdSource("http://127.0.0.1:2379", "")


async def test_snapshot_lists_every_page_at_one_revision(
    etcd: EtcdServer, etcd_client: aetcd.Client, prefix: str
) -> None:
    count = PAGE_SIZE * 2 + 7
    for i in range(count):
        await etcd_client.put(f"{prefix}tool-{i:04d}".encode(), b"{}")
    await etcd_client.put(b"/elsewhere/tool-x", b"{}")
    source = EtcdSource(etcd.url, prefix)
    try:
        snapshot = await source.snapshot()
    finally:
        await source.aclose()
    assert [e.tool_id for e in snapshot.entries] == [f"tool-{i:04d}" for i in range(count)]
    assert snapshot.entries[0].key == f"{prefix}tool-0000"
    latest = await etcd_client.get(b"/elsewhere/tool-x")
    assert latest is not None
    assert snapshot.revision == latest.mod_revision


async def test_watch_reports_puts_deletes_and_why_keys_went(
    etcd: EtcdServer, etcd_client: aetcd.Client, prefix: str
) -> None:
    source = EtcdSource(etcd.url, prefix)
    start = (await source.snapshot()).revision + 1
    lease = await etcd_client.lease(30)
    await etcd_client.put(f"{prefix}a".encode(), b"1", lease=lease)
    await etcd_client.put(f"{prefix}b".encode(), b"2", lease=lease)
    await etcd_client.put(f"{prefix}c".encode(), b"3")
    # The reason is judged when the event arrives (is the key's lease gone?),
    # so each removal happens while the watch runs, as in production.
    removals = [
        etcd_client.delete(f"{prefix}a".encode()),  # deleted while its lease lives
        etcd_client.revoke_lease(lease.id),  # takes b with it
        etcd_client.delete(f"{prefix}c".encode()),  # never had a lease
    ]
    seen = []
    try:
        async with asyncio.timeout(WAIT), source.watch(start) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 6:
                    break
                if len(seen) >= 3:
                    await removals[len(seen) - 3]
    finally:
        await source.aclose()
    assert [(e.kind, e.tool_id, e.value, e.reason) for e in seen] == [
        (SourceEventKind.PUT, "a", b"1", None),
        (SourceEventKind.PUT, "b", b"2", None),
        (SourceEventKind.PUT, "c", b"3", None),
        (SourceEventKind.DELETE, "a", None, "etcd key deleted"),
        (SourceEventKind.DELETE, "b", None, "etcd lease expired"),
        (SourceEventKind.DELETE, "c", None, "etcd key deleted"),
    ]
    revisions = [e.revision for e in seen]
    assert revisions == sorted(revisions)
    assert revisions[0] == start


async def test_watch_from_a_compacted_revision_says_history_is_lost(
    etcd: EtcdServer, etcd_client: aetcd.Client, prefix: str
) -> None:
    source = EtcdSource(etcd.url, prefix)
    old = (await source.snapshot()).revision
    for i in range(3):
        put = await etcd_client.put(f"{prefix}k{i}".encode(), b"{}")
    await etcd_client.compact(put.header.revision)
    try:
        # etcd creates the watch, then cancels it with the compaction revision.
        with pytest.raises(SourceHistoryLostError, match="compacted") as caught:
            async with asyncio.timeout(WAIT), source.watch(old + 1) as events:
                await anext(aiter(events))
        assert caught.value.oldest_revision == put.header.revision
        # From the compaction revision on, the history is there.
        async with asyncio.timeout(WAIT), source.watch(put.header.revision) as events:
            event = await anext(aiter(events))
        assert (event.tool_id, event.revision) == ("k2", put.header.revision)
    finally:
        await source.aclose()


async def test_unreachable_etcd_is_unavailable_quickly_and_recovers(
    etcd: EtcdServer, prefix: str
) -> None:
    nobody = EtcdSource(f"http://127.0.0.1:{free_port()}", prefix, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="UNAVAILABLE"):
        await nobody.snapshot()
    with pytest.raises(SourceUnavailableError):
        async with nobody.watch(1):
            pass
    assert time.monotonic() - started < 3.0
    await nobody.aclose()

    # A second endpoint is tried after the first fails.
    both = EtcdSource(f"http://127.0.0.1:{free_port()},{etcd.url}", prefix, timeout=1.0)
    try:
        with pytest.raises(SourceUnavailableError):
            await both.snapshot()
        assert (await both.snapshot()).revision >= 1
    finally:
        await both.aclose()


async def test_a_watch_fails_when_etcd_stops_and_works_again_after_restart(
    etcd: EtcdServer, etcd_client: aetcd.Client, prefix: str
) -> None:
    source = EtcdSource(etcd.url, prefix, timeout=1.0)
    start = (await source.snapshot()).revision + 1
    async with asyncio.timeout(WAIT), source.watch(start) as events:
        await etcd.stop()
        with pytest.raises(SourceUnavailableError, match="watching"):
            await anext(aiter(events))
    await etcd.start()
    await etcd_client.put(f"{prefix}after".encode(), b"x")
    try:
        async with asyncio.timeout(WAIT), source.watch(start) as events:
            event = await anext(aiter(events))
    finally:
        await source.aclose()
    assert (event.kind, event.tool_id) == (SourceEventKind.PUT, "after")
