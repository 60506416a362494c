"""Settings: defaults, the DSN they build, and errors that name the variable."""

from __future__ import annotations

import pytest

from omninode_bridge.errors import ConfigurationError
from omninode_bridge.services.discovery import DiscoveryTuning
from omninode_bridge.services.postgres_client import describe_dsn
from omninode_bridge.settings import dsn_hosts, load_settings


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "TOOLREG_DATA_DIR",
        "TOOLREG_POOL_MIN_SIZE",
        "TOOLREG_POOL_MAX_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_nothing_set_means_embedded() -> None:
    settings = load_settings()
    assert settings.uses_embedded
    assert settings.external_dsn() is None
    assert settings.postgres_db == "omninode_bridge"
    assert settings.postgres_user == "postgres"


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:6543/reg")
    monkeypatch.setenv("POSTGRES_HOST", "elsewhere")
    settings = load_settings()
    assert not settings.uses_embedded
    assert settings.external_dsn() == "postgresql://u:p@db.example:6543/reg"


def test_asyncpg_style_scheme_is_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@h/db")
    assert load_settings().external_dsn() == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("url", "hosts", "described"),
    [
        (
            "postgresql://u:p@127.0.0.1:5432,127.0.0.1:5433/db?target_session_attrs=read-write",
            [("127.0.0.1", 5432), ("127.0.0.1", 5433)],
            "127.0.0.1:5432,127.0.0.1:5433/db",
        ),
        ("postgresql://u:p@h1,h2:5433/db", [("h1", None), ("h2", 5433)], "h1:5432,h2:5433/db"),
        (
            "postgresql://u:p@[::1]:5432,[fe80::1]/db",
            [("::1", 5432), ("fe80::1", None)],
            "[::1]:5432,[fe80::1]:5432/db",
        ),
        (
            "postgresql://u@/db?host=h1,h2&port=6432,6433",
            [("h1", 6432), ("h2", 6433)],
            "h1:6432,h2:6433/db",
        ),
        (
            "postgresql://u@/db?host=h1,h2&port=6432",
            [("h1", 6432), ("h2", 6432)],
            "h1:6432,h2:6432/db",
        ),
    ],
)
def test_multi_host_url_is_accepted_as_given(
    monkeypatch: pytest.MonkeyPatch, url: str, hosts: list[tuple[str, int | None]], described: str
) -> None:
    # What asyncpg (and libpq) accept for a Patroni cluster: every host, tried in order.
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_settings().external_dsn() == url
    assert dsn_hosts(url) == hosts
    assert describe_dsn(url) == described


def test_postgres_parts_build_a_quoted_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss:/word")
    monkeypatch.setenv("POSTGRES_PORT", "5433")
    assert (
        load_settings().external_dsn()
        == "postgresql://postgres:p%40ss%3A%2Fword@127.0.0.1:5433/omninode_bridge"
    )


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://u@h/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@h:notaport/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql:///db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@h1:5432,h2:notaport/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@h1:5432,h2:70000/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@[::1:5432/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@/db?host=h1,h2&port=1,2,3", "DATABASE_URL"),
        ("POSTGRES_PORT", "abc", "POSTGRES_PORT"),
        ("POSTGRES_PORT", "70000", "POSTGRES_PORT"),
        ("POSTGRES_DB", "bad-name; drop", "POSTGRES_DB"),
        ("TOOLREG_POOL_MAX_SIZE", "0", "TOOLREG_POOL_MAX_SIZE"),
        ("TOOLREG_CONNECT_TIMEOUT", "-1", "TOOLREG_CONNECT_TIMEOUT"),
        ("TOOLREG_HEARTBEAT_BATCH_WINDOW_MS", "-1", "TOOLREG_HEARTBEAT_BATCH_WINDOW_MS"),
        ("TOOLREG_HEARTBEAT_BATCH_WINDOW_MS", "5s", "TOOLREG_HEARTBEAT_BATCH_WINDOW_MS"),
        ("TOOLREG_HEARTBEAT_BATCH_MAX", "0", "TOOLREG_HEARTBEAT_BATCH_MAX"),
        ("TOOLREG_TOKEN_CACHE_SECONDS", "-1", "TOOLREG_TOKEN_CACHE_SECONDS"),
        ("TOOLREG_TOKEN_CACHE_SECONDS", "3600", "TOOLREG_TOKEN_CACHE_SECONDS"),
        ("TOOLREG_DISCOVERY_CACHE_SIZE", "0", "TOOLREG_DISCOVERY_CACHE_SIZE"),
        ("TOOLREG_MCP_LISTENS_PER_CLIENT", "0", "TOOLREG_MCP_LISTENS_PER_CLIENT"),
        ("TOOLREG_MCP_LISTENS_PER_CLIENT", "1025", "TOOLREG_MCP_LISTENS_PER_CLIENT"),
        (
            "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS",
            "0",
            "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS",
            "61",
            "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_HEARTBEAT_OVERLAP_SECONDS",
            "-1",
            "TOOLREG_DISCOVERY_HEARTBEAT_OVERLAP_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS",
            "0",
            "TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS",
            "1m",
            "TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_FEED_POLL_INTERVAL_SECONDS",
            "0",
            "TOOLREG_DISCOVERY_FEED_POLL_INTERVAL_SECONDS",
        ),
        ("TOOLREG_DISCOVERY_STALL_SECONDS", "0", "TOOLREG_DISCOVERY_STALL_SECONDS"),
        (
            "TOOLREG_DISCOVERY_QUERY_TIMEOUT_SECONDS",
            "-5",
            "TOOLREG_DISCOVERY_QUERY_TIMEOUT_SECONDS",
        ),
        (
            "TOOLREG_DISCOVERY_RECONNECT_MAX_SECONDS",
            "0.01",
            "TOOLREG_DISCOVERY_RECONNECT_MAX_SECONDS",
        ),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_bad_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:s3cret@h/db")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "s3cret" not in str(info.value)


def test_pool_bounds_checked_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLREG_POOL_MIN_SIZE", "30")
    monkeypatch.setenv("TOOLREG_POOL_MAX_SIZE", "10")
    with pytest.raises(ConfigurationError, match="TOOLREG_POOL_MIN_SIZE"):
        load_settings()


def test_discovery_intervals_reach_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = DiscoveryTuning.from_settings(load_settings())
    assert defaults == DiscoveryTuning()  # the defaults are unchanged
    monkeypatch.setenv("TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("TOOLREG_DISCOVERY_HEARTBEAT_OVERLAP_SECONDS", "2")
    monkeypatch.setenv("TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS", "120")
    monkeypatch.setenv("TOOLREG_DISCOVERY_FEED_POLL_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("TOOLREG_DISCOVERY_STALL_SECONDS", "4")
    monkeypatch.setenv("TOOLREG_DISCOVERY_QUERY_TIMEOUT_SECONDS", "10")
    monkeypatch.setenv("TOOLREG_DISCOVERY_RECONNECT_MAX_SECONDS", "1")
    tuning = DiscoveryTuning.from_settings(load_settings())
    assert tuning == DiscoveryTuning(
        heartbeat_interval=0.5,
        heartbeat_overlap=2.0,
        full_sweep_interval=120.0,
        feed_poll_interval=1.0,
        stall_seconds=4.0,
        query_timeout=10.0,
        reconnect_max=1.0,
    )


def test_stall_must_outlast_the_heartbeat_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS", "3")
    with pytest.raises(ConfigurationError, match="TOOLREG_DISCOVERY_STALL_SECONDS"):
        load_settings()
