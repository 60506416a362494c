"""Translation of driver errors into the ``omninode_bridge.errors`` tree.

This is the one place that knows asyncpg's exception classes. Callers wrap
database work in :func:`translating` and get typed errors with the original
kept as ``__cause__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import asyncpg.exceptions as pgexc

from omninode_bridge.errors import (
    ConfigurationError,
    DatabaseError,
    MigrationError,
    OmniNodeBridgeError,
    RegistryUnavailableError,
)

__all__ = ["DRIVER_ERRORS", "is_unavailable", "translate", "translating"]

# Everything the driver (or the socket under it) raises; translated at the boundary.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    pgexc.PostgresConnectionError,  # SQLSTATE class 08
    pgexc.CannotConnectNowError,  # 57P03: starting up / shutting down
    pgexc.AdminShutdownError,  # 57P01
    pgexc.CrashShutdownError,  # 57P02
    pgexc.TooManyConnectionsError,  # 53300
    pgexc.QueryCanceledError,  # 57014: statement_timeout or cancel
    pgexc.ConnectionDoesNotExistError,
    # A connection whose protocol state broke mid-outage ("cannot switch to
    # state 15; another operation is in progress"): it is lost to its user.
    asyncpg.InternalClientError,
)
_CONFIG: tuple[type[BaseException], ...] = (
    pgexc.InvalidPasswordError,
    pgexc.InvalidAuthorizationSpecificationError,
    pgexc.InvalidCatalogNameError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or was lost."""
    if isinstance(exc, pgexc.InterfaceError) and any(
        # A pooled connection that died mid-use: asyncpg closes it and detaches it
        # from its holder ("... has been released back to the pool").
        marker in str(exc)
        for marker in ("connection is closed", "released back to the pool")
    ):
        return True
    return isinstance(exc, _UNAVAILABLE)


def translate(exc: BaseException, where: str) -> OmniNodeBridgeError:
    """The typed error for driver error ``exc``; ``where`` names the database (no password)."""
    if isinstance(exc, OmniNodeBridgeError):
        return exc
    if is_unavailable(exc):
        reason = (
            "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
        )
        return RegistryUnavailableError(f"database {where} is unavailable: {reason}")
    if isinstance(exc, _CONFIG):
        return ConfigurationError(f"database {where} rejected the connection: {exc}")
    if isinstance(exc, pgexc.UndefinedTableError | pgexc.UndefinedColumnError):
        return MigrationError(
            f"database {where} lacks the registry schema ({exc}); run `toolreg db upgrade`"
        )
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        return DatabaseError(f"database {where} failed [{state}]: {exc}")
    return DatabaseError(f"database {where} failed: {type(exc).__name__}: {exc}")


@contextmanager
def translating(where: str) -> Iterator[None]:
    """Re-raise driver errors from the body as typed errors (original as ``__cause__``)."""
    try:
        yield
    except OmniNodeBridgeError:
        raise
    except DRIVER_ERRORS as exc:
        raise translate(exc, where) from exc
