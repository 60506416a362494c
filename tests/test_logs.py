"""The log formats of ``omninode_bridge.logs`` on real records."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

import orjson

from omninode_bridge.logs import IsoFormatter, JsonFormatter


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


def test_json_keeps_an_exception_on_its_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in orjson.loads(line)["exception"]
