"""Liveness settings from the environment, and revision 0004 up and down."""

from __future__ import annotations

import os

import asyncpg
import pytest

from omninode_bridge.errors import ConfigurationError
from omninode_bridge.migrations import HEAD_REVISION, runner
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.settings import load_settings
from tests.liveness.helpers import register

INTERVALS = ("TOOLREG_REAP_INTERVAL_SECONDS", "TOOLREG_CHECK_INTERVAL_SECONDS")


@pytest.mark.parametrize("name", INTERVALS)
def test_intervals_accept_sub_second_values(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0.25")
    settings = load_settings()
    assert min(settings.reap_interval_seconds, settings.check_interval_seconds) == 0.25
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigurationError, match=name):
            load_settings()


def test_liveness_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("TOOLREG_"):
            monkeypatch.delenv(name)
    s = load_settings()
    assert (s.ttl_seconds, s.retention_seconds, s.self_preservation_threshold) == (300, 3600, 0.5)
    assert (s.reap_interval_seconds, s.check_interval_seconds) == (60, 30)
    assert (s.check_timeout_seconds, s.check_concurrency) == (5, 50)
    assert (s.check_fail_threshold, s.check_pass_threshold) == (3, 2)
    assert s.leader_lease_seconds is None and s.leader_lease == 90  # three check intervals


def test_the_leader_lease_follows_the_check_interval_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOOLREG_CHECK_INTERVAL_SECONDS", "2")
    assert load_settings().leader_lease == 6
    monkeypatch.setenv("TOOLREG_LEADER_LEASE_SECONDS", "1.5")
    assert load_settings().leader_lease == 1.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("TOOLREG_LEADER_LEASE_SECONDS", bad)
        with pytest.raises(ConfigurationError, match="TOOLREG_LEADER_LEASE_SECONDS"):
            load_settings()


def test_retention_must_be_longer_than_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLREG_TTL_SECONDS", "600")
    monkeypatch.setenv("TOOLREG_RETENTION_SECONDS", "600")
    with pytest.raises(ConfigurationError, match="must be longer than"):
        load_settings()


async def test_revision_0004_down_and_up(
    db_dsn: str, postgres_client: PostgresClient, repository: ToolRegistrationRepository
) -> None:
    await register(repository, "t", heartbeat_age=400)
    await postgres_client.execute(
        "INSERT INTO tool_health (tool_id, check_status) VALUES ('t', 'critical')"
    )
    await postgres_client.execute(
        "INSERT INTO tool_registration_events (kind, tool_id) VALUES ('critical', 't')"
    )
    await postgres_client.close()  # the downgrade takes locks the pool's sessions would hold
    await runner.downgrade(db_dsn, "0003")
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('tool_health')") is None
        kinds = await conn.fetch("SELECT kind FROM tool_registration_events ORDER BY seq")
        assert [r["kind"] for r in kinds] == ["created"]  # what 0003's code can read
    finally:
        await conn.close()
    await runner.upgrade(db_dsn)
    assert await runner.current_revision(db_dsn) == HEAD_REVISION
