"""The log formats of ``omninode_bridge.logs`` on real records."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import asyncpg
import orjson
import pytest

from omninode_bridge.logs import IsoFormatter, JsonFormatter, OutageOneLiner, configure
from tests.support import SwitchableProxy


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "omninode_bridge.test", logging.WARNING, __file__, 1, message, args, None
    )
    record.__dict__.update(extra)
    return record


def test_text_lines_start_with_an_iso_8601_time_with_its_offset() -> None:
    line = IsoFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(
        _record("pool at %d%%", 80)
    )
    stamp, rest = line.split(" ", 1)
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert stamp.endswith("+00:00")
    assert rest == "WARNING omninode_bridge.test: pool at 80%"


def test_json_has_the_fields_as_keys_but_never_over_the_base_keys() -> None:
    record = _record("GET / 200", fields={"status": 200, "message": "forged", "level": "x"})
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["message"] == "GET / 200"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "omninode_bridge.test"
    assert entry["status"] == 200
    assert datetime.fromisoformat(entry["timestamp"]).utcoffset() is not None


def _failed(message: str, error: str) -> logging.LogRecord:
    """A record of ``message`` carrying a ValueError(``error``) with its traceback."""
    try:
        raise ValueError(error)
    except ValueError:
        record = _record(message)
        record.exc_info = sys.exc_info()
    return record


def test_json_keeps_an_exception_on_its_one_line() -> None:
    record = _failed("failed", "boom")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in orjson.loads(line)["exception"]


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def configured() -> Iterator[_Captured]:
    """The server's logging, with a handler that keeps the records; restored after."""
    root, pool_logger = logging.getLogger(), logging.getLogger("asyncpg.pool")
    saved = root.handlers[:], root.level, pool_logger.filters[:]
    configure("info", "text")
    captured = _Captured()
    root.addHandler(captured)
    try:
        yield captured
    finally:
        root.handlers[:], pool_logger.filters[:] = saved[0], saved[2]
        root.setLevel(saved[1])


async def test_the_pool_failing_to_reconnect_in_an_outage_logs_one_line(
    db_dsn: str, configured: _Captured
) -> None:
    """asyncpg's pool warns with a traceback each time it fails to reopen its floor of
    connections (for a whole outage); under ``configure`` each is one line with the error."""
    proxy = SwitchableProxy(db_dsn)
    await proxy.up()
    pool = await asyncpg.create_pool(proxy.dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await proxy.down()  # the primary is gone mid-use
            with pytest.raises((asyncpg.PostgresConnectionError, OSError)):
                await conn.fetchval("SELECT 1")
        deadline = time.monotonic() + 10
        while not (found := [r for r in configured.records if r.name == "asyncpg.pool"]):
            assert time.monotonic() < deadline, "the pool never tried to restore its floor"
            await asyncio.sleep(0.05)
    finally:
        pool.terminate()
    record = found[0]
    assert record.exc_info is None
    message = record.getMessage()
    assert message.startswith("Failed to restore the pool connection floor; retrying (")
    assert "Error" in message and "\n" not in message


def test_other_exceptions_keep_their_traceback() -> None:
    record = _failed("Failed to restore the pool connection floor; retrying", "a bug")
    assert OutageOneLiner().filter(record)
    assert record.exc_info is not None
    assert record.getMessage() == "Failed to restore the pool connection floor; retrying"
