"""Settings read from the environment (pydantic-settings).

The database is chosen in this order:

1. ``DATABASE_URL`` (``postgresql://user:pass@host:port/db``);
2. ``POSTGRES_HOST`` with ``POSTGRES_PORT/USER/PASSWORD/DB`` (defaults: 5432,
   ``postgres``, no password, ``omninode_bridge`` as in the usage guide);
3. neither set: the embedded PostgreSQL under ``TOOLREG_DATA_DIR``.

A malformed value raises :class:`~omninode_bridge.errors.ConfigurationError`
naming the variable, never echoing its value (it may hold a password).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from omninode_bridge.errors import ConfigurationError

__all__ = ["Settings", "dsn_hosts", "load_settings"]

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def _port(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("has an invalid port")
    return int(text)


def dsn_hosts(dsn: str) -> list[tuple[str, int | None]]:
    """The ``(host, port)`` pairs of a ``postgresql://`` URL, in the order they are tried.

    Multi-host URLs (``h1:5432,h2:5433``, ``[::1]:5432``, or ``?host=h1,h2&port=5432,5433``
    as libpq and asyncpg accept them) give one pair each; a port left out is ``None``. An
    empty list: the URL names no host. Raises ValueError ("has an invalid port") for a
    port that is not 1-65535 and for a port list that does not match the hosts.
    """
    parts = urlsplit(dsn)
    hosts: list[tuple[str, int | None]] = []
    hostlist = parts.netloc.rpartition("@")[2]
    for entry in hostlist.split(",") if hostlist else []:
        if entry.startswith("["):  # an IPv6 address
            host, closed, rest = entry[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                raise ValueError("has a malformed [IPv6] host")
            hosts.append((host, _port(rest[1:])))
        else:
            host, _, port = entry.partition(":")
            hosts.append((host, _port(port)))
    query = parse_qs(parts.query)
    if "host" in query:  # libpq's host= parameter overrides the URL's hosts
        ports = [_port(p) for p in ",".join(query.get("port", [])).split(",")]
        names = ",".join(query["host"]).split(",")
        if len(ports) == 1:
            ports *= len(names)
        if len(ports) != len(names):
            raise ValueError("has an invalid port (one per host= entry, or one for all)")
        hosts = list(zip(names, ports, strict=True))
    return [(host, port) for host, port in hosts if host or port is not None]


def _env(name: str, default: Any, **constraints: Any) -> Any:
    # One exact environment name per field; the Python name also works as a keyword.
    return Field(default=default, validation_alias=name, **constraints)


class Settings(BaseSettings):
    """Every knob, with its environment variable; see the README's configuration table."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", populate_by_name=True, frozen=True
    )

    # -- database ---------------------------------------------------------------
    database_url: SecretStr | None = _env("DATABASE_URL", None)
    postgres_host: str | None = _env("POSTGRES_HOST", None)
    postgres_port: int = _env("POSTGRES_PORT", 5432, ge=1, le=65535)
    postgres_user: str = _env("POSTGRES_USER", "postgres", min_length=1)
    postgres_password: SecretStr | None = _env("POSTGRES_PASSWORD", None)
    postgres_db: str = _env("POSTGRES_DB", "omninode_bridge")
    data_dir: Path | None = _env("TOOLREG_DATA_DIR", None)
    pool_min_size: int = _env("TOOLREG_POOL_MIN_SIZE", 5, ge=0, le=1000)
    pool_max_size: int = _env("TOOLREG_POOL_MAX_SIZE", 20, ge=1, le=1000)
    connect_timeout: float = _env("TOOLREG_CONNECT_TIMEOUT", 10.0, gt=0, le=600)
    command_timeout: float = _env("TOOLREG_COMMAND_TIMEOUT", 30.0, gt=0, le=3600)
    statement_cache_size: int = _env("TOOLREG_STATEMENT_CACHE_SIZE", 100, ge=0, le=10000)
    pool_acquire_timeout: float = _env("TOOLREG_POOL_ACQUIRE_TIMEOUT_SECONDS", 5.0, gt=0, le=600)
    query_timeout_seconds: float = _env("TOOLREG_QUERY_TIMEOUT_SECONDS", 5.0, gt=0, le=3600)
    search_concurrency: int = _env("TOOLREG_SEARCH_CONCURRENCY", 4, ge=1, le=1000)

    # -- registrations and the change feed ----------------------------------------
    max_json_bytes: int = _env("TOOLREG_MAX_JSON_BYTES", 64 * 1024, ge=256, le=16 * 1024 * 1024)
    max_registration_bytes: int = _env(
        "TOOLREG_MAX_REGISTRATION_BYTES", 256 * 1024, ge=1024, le=64 * 1024 * 1024
    )
    event_retention_seconds: float = _env("TOOLREG_EVENT_RETENTION_SECONDS", 7 * 86400.0, gt=0)
    # POST /v1/tools/{id}/heartbeat: heartbeats arriving within this window (from the
    # first) are written in one statement, at most this many at once. 0: one statement
    # per request.
    heartbeat_batch_window_ms: float = _env("TOOLREG_HEARTBEAT_BATCH_WINDOW_MS", 5.0, ge=0, le=1000)
    heartbeat_batch_max: int = _env("TOOLREG_HEARTBEAT_BATCH_MAX", 500, ge=1, le=10000)

    # -- the HTTP server ----------------------------------------------------------
    host: str = _env("TOOLREG_HOST", "127.0.0.1", min_length=1)
    port: int = _env("TOOLREG_PORT", 8080, ge=0, le=65535)
    max_body_bytes: int = _env("TOOLREG_MAX_BODY_BYTES", 1024 * 1024, ge=1024)
    reads_require_token: bool = _env("TOOLREG_READS_REQUIRE_TOKEN", False)
    header_timeout_seconds: float = _env("TOOLREG_HEADER_TIMEOUT_SECONDS", 10.0, gt=0, le=3600)
    sse_buffer_bytes: int = _env("TOOLREG_SSE_BUFFER_BYTES", 4 * 1024 * 1024, ge=64 * 1024)
    stream_token_recheck_seconds: float = _env(
        "TOOLREG_STREAM_TOKEN_RECHECK_SECONDS", 3.0, gt=0, le=3600
    )
    # How long a server trusts a token it has checked (0: check it on every request). A
    # token revoked through another server or the CLI is refused within this time.
    token_cache_seconds: float = _env("TOOLREG_TOKEN_CACHE_SECONDS", 1.0, ge=0, le=60)
    # The server's log lines: text (ISO 8601 time, level, logger, message) or one JSON
    # object per line with the same keys, plus the access log's fields (omninode_bridge.logs).
    log_format: Literal["text", "json"] = _env("TOOLREG_LOG_FORMAT", "text")

    # -- discovery and routing ------------------------------------------------------
    ttl_seconds: float = _env("TOOLREG_TTL_SECONDS", 300.0, gt=0)
    http_connect_timeout: float = _env("TOOLREG_HTTP_CONNECT_TIMEOUT", 2.0, gt=0, le=600)
    http_read_timeout: float = _env("TOOLREG_HTTP_READ_TIMEOUT", 30.0, gt=0, le=3600)
    route_max_attempts: int = _env("TOOLREG_ROUTE_MAX_ATTEMPTS", 3, ge=1, le=100)
    max_response_bytes: int = _env("TOOLREG_MAX_RESPONSE_BYTES", 10 * 1024 * 1024, ge=1024)
    eject_base_seconds: float = _env("TOOLREG_EJECT_BASE_SECONDS", 1.0, gt=0)
    eject_max_seconds: float = _env("TOOLREG_EJECT_MAX_SECONDS", 60.0, gt=0)
    stale_index_grace_seconds: float = _env("TOOLREG_STALE_INDEX_GRACE_SECONDS", 30.0, ge=0)
    # Full registrations that discovery keeps for its answers (the index itself keeps only
    # routing facts); a tool beyond them costs one query by id when it is chosen.
    discovery_cache_size: int = _env("TOOLREG_DISCOVERY_CACHE_SIZE", 50_000, ge=1, le=10_000_000)
    # The discovery index's background work: how often it reads new heartbeats (and how
    # far back, for transactions still committing), reads every heartbeat, polls the feed
    # when no NOTIFY came; a refresh missing for STALL_SECONDS marks the index stale; each
    # query's timeout; the longest wait before following the feed again after a failover.
    discovery_heartbeat_interval_seconds: float = _env(
        "TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS", 0.25, gt=0, le=60
    )
    discovery_heartbeat_overlap_seconds: float = _env(
        "TOOLREG_DISCOVERY_HEARTBEAT_OVERLAP_SECONDS", 1.0, ge=0, le=60
    )
    discovery_full_sweep_interval_seconds: float = _env(
        "TOOLREG_DISCOVERY_FULL_SWEEP_INTERVAL_SECONDS", 60.0, gt=0, le=86400
    )
    discovery_feed_poll_interval_seconds: float = _env(
        "TOOLREG_DISCOVERY_FEED_POLL_INTERVAL_SECONDS", 0.5, gt=0, le=60
    )
    discovery_stall_seconds: float = _env("TOOLREG_DISCOVERY_STALL_SECONDS", 2.0, gt=0, le=3600)
    discovery_query_timeout_seconds: float = _env(
        "TOOLREG_DISCOVERY_QUERY_TIMEOUT_SECONDS", 5.0, gt=0, le=3600
    )
    discovery_reconnect_max_seconds: float = _env(
        "TOOLREG_DISCOVERY_RECONNECT_MAX_SECONDS", 0.5, ge=0.05, le=60
    )

    # -- liveness: reaper and active health checks -----------------------------------
    retention_seconds: float = _env("TOOLREG_RETENTION_SECONDS", 3600.0, gt=0)
    self_preservation_threshold: float = _env(
        "TOOLREG_SELF_PRESERVATION_THRESHOLD", 0.5, gt=0, le=1
    )
    reap_interval_seconds: float = _env("TOOLREG_REAP_INTERVAL_SECONDS", 60.0, gt=0)
    check_interval_seconds: float = _env("TOOLREG_CHECK_INTERVAL_SECONDS", 30.0, gt=0)
    check_timeout_seconds: float = _env("TOOLREG_CHECK_TIMEOUT_SECONDS", 5.0, gt=0)
    check_concurrency: int = _env("TOOLREG_CHECK_CONCURRENCY", 50, ge=1, le=10000)
    check_fail_threshold: int = _env("TOOLREG_CHECK_FAIL_THRESHOLD", 3, ge=1, le=100)
    check_pass_threshold: int = _env("TOOLREG_CHECK_PASS_THRESHOLD", 2, ge=1, le=100)
    # Unset: three check intervals. Judged on the database clock.
    leader_lease_seconds: float | None = _env("TOOLREG_LEADER_LEASE_SECONDS", None, gt=0)

    # -- the Consul-compatible API -----------------------------------------------------
    datacenter: str = _env("TOOLREG_DATACENTER", "dc1", min_length=1, max_length=64)
    node_name: str = Field(
        default_factory=socket.gethostname,
        validation_alias="TOOLREG_NODE_NAME",
        min_length=1,
        max_length=128,
    )

    # -- the MCP server (/mcp) and the MCP registry API (/v0.1) ---------------------------
    # Comma-separated Host values /mcp accepts (``host:*`` for any port); "*" turns the
    # DNS-rebinding checks off. Unset: loopback names, plus TOOLREG_HOST when it is one address.
    mcp_allowed_hosts: str | None = _env("TOOLREG_MCP_ALLOWED_HOSTS", None, max_length=4096)
    # Comma-separated Origin values /mcp accepts from browsers. Unset: loopback origins.
    mcp_allowed_origins: str | None = _env("TOOLREG_MCP_ALLOWED_ORIGINS", None, max_length=4096)
    # The namespace of MCP server names derived from tool ids (``<namespace>/<tool_id>``)
    # for tools without a ``metadata.mcp_name``.
    mcp_namespace: str = _env(
        "TOOLREG_MCP_NAMESPACE", "io.omninode", pattern=r"^[a-zA-Z0-9.-]+$", max_length=100
    )
    # Listen streams (subscriptions/listen) one client may hold open on one server at once:
    # per token name, else per client address. The SDK allows 1024 per server in all.
    mcp_listens_per_client: int = _env("TOOLREG_MCP_LISTENS_PER_CLIENT", 32, ge=1, le=1024)

    # -- auto-discovery from Consul ----------------------------------------------------
    consul_address: str | None = _env("TOOLREG_CONSUL_ADDRESS", None)
    consul_services: str | None = _env("TOOLREG_CONSUL_SERVICES", None)
    consul_token: SecretStr | None = _env("TOOLREG_CONSUL_TOKEN", None)

    # -- auto-discovery from etcd ------------------------------------------------------
    etcd_endpoints: str | None = _env("TOOLREG_ETCD_ENDPOINTS", None)
    etcd_prefix: str = _env("TOOLREG_ETCD_PREFIX", "/omninode/tools/", min_length=1)
    # Sources may claim a tool_id another owner released within the retention.
    autodiscover_claim_released: bool = _env("TOOLREG_AUTODISCOVER_CLAIM_RELEASED", False)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        try:
            parts = urlsplit(raw)
        except ValueError as exc:
            raise ValueError(f"is not a URL ({exc})") from None
        if parts.scheme not in _SCHEMES:
            raise ValueError(
                "must start with postgresql:// (or postgres://), "
                f"got scheme {parts.scheme or '(none)'!r}"
            )
        # Every host of a multi-host URL (h1:5432,h2:5433) is checked, with its port.
        if not [host for host, _ in dsn_hosts(raw) if host]:
            raise ValueError("names no host (postgresql://user:password@host:port/database)")
        if parts.scheme != "postgresql":
            raw = "postgresql" + raw[len(parts.scheme) :]
        return SecretStr(raw)

    @field_validator("postgres_db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not _DB_NAME.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscore)")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"TOOLREG_POOL_MIN_SIZE ({self.pool_min_size}) exceeds "
                f"TOOLREG_POOL_MAX_SIZE ({self.pool_max_size})"
            )
        if self.retention_seconds <= self.ttl_seconds:
            raise ValueError(
                f"TOOLREG_RETENTION_SECONDS ({self.retention_seconds}) must be longer than "
                f"TOOLREG_TTL_SECONDS ({self.ttl_seconds})"
            )
        if self.discovery_stall_seconds <= self.discovery_heartbeat_interval_seconds:
            raise ValueError(
                f"TOOLREG_DISCOVERY_STALL_SECONDS ({self.discovery_stall_seconds}) must be "
                "longer than TOOLREG_DISCOVERY_HEARTBEAT_INTERVAL_SECONDS "
                f"({self.discovery_heartbeat_interval_seconds})"
            )
        if self.eject_base_seconds > self.eject_max_seconds:
            raise ValueError(
                f"TOOLREG_EJECT_BASE_SECONDS ({self.eject_base_seconds}) exceeds "
                f"TOOLREG_EJECT_MAX_SECONDS ({self.eject_max_seconds})"
            )
        return self

    @property
    def claim_hold_seconds(self) -> float:
        """How long a released tool_id waits for an admin's consent before a source claims it."""
        return 0.0 if self.autodiscover_claim_released else self.retention_seconds

    @property
    def leader_lease(self) -> float:
        """Seconds the liveness leader's lease lasts without a renewal."""
        if self.leader_lease_seconds is not None:
            return self.leader_lease_seconds
        return 3 * self.check_interval_seconds

    @property
    def uses_embedded(self) -> bool:
        """True when neither DATABASE_URL nor POSTGRES_HOST is set."""
        return self.database_url is None and not self.postgres_host

    def external_dsn(self) -> str | None:
        """The configured server's DSN, or ``None`` when the embedded server is in use."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if not self.postgres_host:
            return None
        user = quote(self.postgres_user, safe="")
        auth = user
        if self.postgres_password is not None:
            auth += ":" + quote(self.postgres_password.get_secret_value(), safe="")
        host = self.postgres_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"postgresql://{auth}@{host}:{self.postgres_port}/{self.postgres_db}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value raises ConfigurationError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{loc.upper()}: {message}" if loc else message)
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
