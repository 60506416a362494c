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
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from omninode_bridge.errors import ConfigurationError

__all__ = ["Settings", "load_settings"]

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def _env(name: str) -> Any:
    # One exact environment name per field; the Python name also works as a keyword.
    return Field(validation_alias=AliasChoices(name, name.lower()))


class Settings(BaseSettings):
    """Every knob, with its environment variable; see the README's configuration table."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", populate_by_name=True, frozen=True
    )

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    postgres_host: str | None = Field(
        default=None, validation_alias=AliasChoices("POSTGRES_HOST", "postgres_host")
    )
    postgres_port: int = Field(
        default=5432,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("POSTGRES_PORT", "postgres_port"),
    )
    postgres_user: str = Field(
        default="postgres",
        min_length=1,
        validation_alias=AliasChoices("POSTGRES_USER", "postgres_user"),
    )
    postgres_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("POSTGRES_PASSWORD", "postgres_password")
    )
    postgres_db: str = Field(
        default="omninode_bridge", validation_alias=AliasChoices("POSTGRES_DB", "postgres_db")
    )
    data_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("TOOLREG_DATA_DIR", "data_dir")
    )
    pool_min_size: int = Field(
        default=5,
        ge=0,
        le=1000,
        validation_alias=AliasChoices("TOOLREG_POOL_MIN_SIZE", "pool_min_size"),
    )
    pool_max_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("TOOLREG_POOL_MAX_SIZE", "pool_max_size"),
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices("TOOLREG_CONNECT_TIMEOUT", "connect_timeout"),
    )
    command_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("TOOLREG_COMMAND_TIMEOUT", "command_timeout"),
    )
    statement_cache_size: int = Field(
        default=100,
        ge=0,
        le=10000,
        validation_alias=AliasChoices("TOOLREG_STATEMENT_CACHE_SIZE", "statement_cache_size"),
    )

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
        try:
            parts.port  # noqa: B018 - parsing the port validates it
        except ValueError:
            raise ValueError("has an invalid port") from None
        if not parts.hostname and "host=" not in parts.query:
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
    def _check_pool(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"TOOLREG_POOL_MIN_SIZE ({self.pool_min_size}) exceeds "
                f"TOOLREG_POOL_MAX_SIZE ({self.pool_max_size})"
            )
        return self

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
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{loc.upper()}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
