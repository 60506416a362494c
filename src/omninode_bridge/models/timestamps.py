"""Timezone-aware UTC timestamps that also subtract safely from naive local ones.

Every timestamp a model carries is a :class:`UtcDateTime`: an aware ``datetime``
in UTC. The usage guide computes ``datetime.now() - tool.last_heartbeat``,
which with plain aware datetimes raises ``TypeError``. Python tries a right
operand's reflected method first when its type subclasses the left one's, so
``UtcDateTime.__rsub__`` reads the naive left side as local time (what
``datetime.now()`` returns) and gives the right answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, overload

from pydantic import AfterValidator

__all__ = ["UtcDateTime", "UtcTimestamp", "iso_time", "to_utc", "utc_now"]


class UtcDateTime(datetime):
    """An aware UTC ``datetime`` that a naive local ``datetime`` can be subtracted from."""

    @classmethod
    def of(cls, value: datetime) -> UtcDateTime:
        """``value`` in UTC; a naive value is read as UTC (the database's convention)."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return cls(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=UTC,
            fold=value.fold,
        )

    def __rsub__(self, other: Any) -> timedelta:
        if isinstance(other, datetime):
            left = other.astimezone() if other.tzinfo is None else other
            return datetime.__sub__(left, self)
        return NotImplemented

    @overload  # type: ignore[override]
    def __sub__(self, other: timedelta) -> datetime: ...
    @overload
    def __sub__(self, other: datetime) -> timedelta: ...
    def __sub__(self, other: Any) -> Any:
        if isinstance(other, datetime) and other.tzinfo is None:
            other = other.astimezone()
        return datetime.__sub__(self, other)


def to_utc(value: datetime) -> UtcDateTime:
    """Normalize any datetime to :class:`UtcDateTime` (naive means UTC)."""
    if value.tzinfo is UTC:
        if type(value) is UtcDateTime:
            return value
        # What asyncpg returns for timestamptz, three times on every row read:
        # retyped from datetime's pickle state, ``(fields as bytes, tzinfo)``,
        # which the constructor copies in C (a third of the cost of passing
        # each field).
        return UtcDateTime(*value.__reduce__()[1])
    if isinstance(value, UtcDateTime):
        return value
    return UtcDateTime.of(value)


def utc_now() -> UtcDateTime:
    """The current time as :class:`UtcDateTime`."""
    return UtcDateTime.of(datetime.now(UTC))


UtcTimestamp = Annotated[datetime, AfterValidator(to_utc)]


def iso_time(epoch_seconds: float) -> str:
    """``epoch_seconds`` (``time.time()``) as ISO 8601 UTC with microseconds, for log lines:
    ``2026-11-30T06:40:01.123456+00:00``."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="microseconds")
