"""A real ``toolreg serve`` for the MCP tests, and an MCP client of the official SDK for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.mcp.helpers import ENV
from tests.support import Server, running_server, temporary_database_blocking


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    """One registry server for the module, reads open."""
    with running_server(module_db, env=ENV) as running:
        yield running


@pytest.fixture(scope="module")
def expiring(server_dsn: str, template_db: str) -> Iterator[Server]:
    """A registry whose heartbeats lapse after 2 s, so that an expiry becomes a feed event
    quickly: for the tests of what a stale tool looks like. Its own database: the TTL that
    the sweep applies is its liveness leader's."""
    with (
        temporary_database_blocking(server_dsn, template=template_db) as dsn,
        running_server(dsn, env={**ENV, "TOOLREG_TTL_SECONDS": "2"}) as running,
    ):
        yield running
