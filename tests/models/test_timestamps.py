"""UTC timestamps that survive the guide's naive ``datetime.now() - tool.last_heartbeat``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

from omninode_bridge.models import UtcDateTime
from omninode_bridge.models.timestamps import to_utc, utc_now


def test_naive_local_now_minus_utc_timestamp_is_the_true_age() -> None:
    stamp = UtcDateTime.of(datetime.now(UTC) - timedelta(seconds=42))
    age = (datetime.now() - stamp).total_seconds()
    assert 42 <= age < 43


def test_aware_arithmetic_is_unchanged() -> None:
    stamp = utc_now()
    assert isinstance(stamp - timedelta(seconds=1), datetime)
    assert (datetime.now(UTC) - stamp).total_seconds() >= 0
    assert (stamp - datetime.now(UTC)).total_seconds() <= 0


def test_other_zones_are_converted_to_utc() -> None:
    plus_two = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = to_utc(plus_two)
    assert converted.tzinfo is UTC
    assert converted.hour == 10
    assert converted == plus_two


def test_true_age_in_a_non_utc_local_zone() -> None:
    # A process whose local time is UTC-5: the naive left side is local time.
    code = (
        "from datetime import datetime, UTC, timedelta\n"
        "from omninode_bridge.models import UtcDateTime\n"
        "s = UtcDateTime.of(datetime.now(UTC) - timedelta(seconds=30))\n"
        "print(round((datetime.now() - s).total_seconds()))\n"
    )
    env = {**os.environ, "TZ": "America/New_York"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "30"
