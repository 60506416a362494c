"""What the liveness tests share besides fixtures: settings, registering tools, the feed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.settings import Settings
from tests.support import base_settings


def liveness_settings(**overrides: Any) -> Settings:
    """Test settings: small pool, short check timeout, the issue's default thresholds."""
    defaults: dict[str, Any] = {
        "check_timeout_seconds": 1.0,
        "check_concurrency": 50,
    }
    return base_settings(**(defaults | overrides))


async def register(
    repository: ToolRegistrationRepository,
    tool_id: str,
    *,
    operations: Sequence[str] = ("stamp",),
    health: str | None = None,
    heartbeat_age: float | None = None,
) -> None:
    """Register ``tool_id`` offering ``operations`` with endpoints; maybe age its heartbeat."""
    await repository.create_registration(
        ModelToolRegistrationCreate(
            tool_id=tool_id,
            node_type="effect",
            capabilities={"operations": list(operations)},
            endpoints={op: f"http://127.0.0.1:9/{op}" for op in operations},
            health_endpoint=health,
        )
    )
    if heartbeat_age is not None:
        when = datetime.now(UTC) - timedelta(seconds=heartbeat_age)
        assert await repository.update_heartbeat(tool_id, when)


async def event_kinds(repository: ToolRegistrationRepository, tool_id: str) -> list[str]:
    """The kinds of ``tool_id``'s change-feed events, in feed order."""
    return [e.kind.value for e in await repository.changes(None, 10_000) if e.tool_id == tool_id]
