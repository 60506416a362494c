"""The API tests' server fixtures, reused: each hardening module gets its own server process."""

from __future__ import annotations

from tests.api.conftest import http as http
from tests.api.conftest import module_db as module_db
from tests.api.conftest import server as server
from tests.api.conftest import uid as uid
