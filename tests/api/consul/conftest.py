"""The API tests' database fixtures, reused by the Consul tests."""

from __future__ import annotations

from tests.api.conftest import module_db as module_db
from tests.api.conftest import uid as uid
