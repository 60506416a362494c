"""Heartbeat times: bounds judged on the database clock, and heartbeats that move backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from omninode_bridge.errors import ValidationFailedError
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import ToolRegistrationRepository

MAX_FUTURE_HEARTBEAT = timedelta(minutes=1)
MAX_PAST_HEARTBEAT = timedelta(days=30)


async def db_now(repository: ToolRegistrationRepository) -> datetime:
    value = await repository.client.fetchval("SELECT now()")
    assert isinstance(value, datetime)
    return value


async def registered(repository: ToolRegistrationRepository, tool_id: str) -> datetime | None:
    await repository.create_registration(
        ModelToolRegistrationCreate(tool_id=tool_id, node_type="effect")
    )
    row = await repository.get_registration(tool_id)
    assert row is not None
    return row.last_heartbeat


@pytest.mark.parametrize(
    "when",
    [
        datetime.min,
        datetime.max,
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    ],
    ids=["naive-min", "naive-max", "year-1", "year-9999"],
)
async def test_absurd_times_are_a_validation_error_and_write_nothing(
    repository: ToolRegistrationRepository, when: datetime
) -> None:
    before = await registered(repository, "t")
    with pytest.raises(ValidationFailedError, match="heartbeat_time"):
        await repository.update_heartbeat("t", when)
    with pytest.raises(ValidationFailedError, match="heartbeat_time"):
        await repository.update_heartbeats(["t"], when)
    with pytest.raises(ValidationFailedError, match="heartbeat_time"):  # absent: still invalid
        await repository.update_heartbeat("nobody", when)
    row = await repository.get_registration("t")
    assert row is not None and row.last_heartbeat == before


async def test_the_bounds_are_judged_on_the_database_clock(
    repository: ToolRegistrationRepository,
) -> None:
    await registered(repository, "t")
    now = await db_now(repository)
    second = timedelta(seconds=1)
    with pytest.raises(ValidationFailedError, match="in the future"):
        await repository.update_heartbeat("t", now + MAX_FUTURE_HEARTBEAT + 5 * second)
    assert await repository.update_heartbeat("t", now + MAX_FUTURE_HEARTBEAT - 5 * second)
    with pytest.raises(ValidationFailedError, match="in the past"):
        await repository.update_heartbeat("t", now - MAX_PAST_HEARTBEAT - 5 * second)
    assert await repository.update_heartbeat("t", now - MAX_PAST_HEARTBEAT + 5 * second)
    assert await repository.update_heartbeats(["t", "x"], now - timedelta(days=1)) == ["x"]
    with pytest.raises(ValidationFailedError, match="in the future"):
        await repository.update_heartbeats(["t"], now + 2 * MAX_FUTURE_HEARTBEAT)


async def test_a_heartbeat_may_move_backwards_and_the_row_holds_it(
    repository: ToolRegistrationRepository,
) -> None:
    await registered(repository, "k3")
    now = await db_now(repository)
    assert await repository.update_heartbeat("k3", now + timedelta(seconds=30))
    assert await repository.update_heartbeat("k3", now - timedelta(days=1))
    row = await repository.get_registration("k3")
    assert row is not None and row.last_heartbeat == now - timedelta(days=1)
    assert await repository.update_heartbeats(["k3"], now + timedelta(seconds=30)) == []
    assert await repository.update_heartbeats(["k3", "nope"], now - timedelta(hours=1)) == ["nope"]
    row = await repository.get_registration("k3")
    assert row is not None and row.last_heartbeat == now - timedelta(hours=1)
    rewound = await repository.client.fetchval(
        "SELECT count(*) FROM heartbeat_rewinds WHERE tool_id = 'k3'"
    )
    assert rewound == 1
