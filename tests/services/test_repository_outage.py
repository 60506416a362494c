"""The database stopped mid-run: typed errors, never "not found", then recovery in-process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from omninode_bridge.embedded import start_embedded, stop_embedded
from omninode_bridge.errors import RegistryUnavailableError
from omninode_bridge.migrations import runner
from omninode_bridge.models import ModelToolRegistrationUpdate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.support import base_settings, registration

pytestmark = pytest.mark.embedded


async def test_outage_raises_typed_errors_then_recovers(temp_data_dir: Path) -> None:
    server = await start_embedded(temp_data_dir)
    dsn = server.dsn("omninode_bridge")
    await runner.upgrade(dsn)
    settings = base_settings(
        pool_min_size=2, pool_max_size=4, connect_timeout=3, command_timeout=10
    )
    async with PostgresClient(settings, dsn=dsn) as client:
        repository = ToolRegistrationRepository(client)
        await repository.create_registration(registration("survivor"))

        await stop_embedded(temp_data_dir)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: repository.get_registration("survivor"),
            lambda: repository.update_heartbeat("survivor"),
            lambda: repository.delete_registration("survivor"),
            lambda: repository.list_all_registrations(),
            lambda: repository.find_by_capability("operations", ["analyze"]),
            lambda: repository.get_healthy_tools(),
            lambda: repository.update_registration(
                "survivor", ModelToolRegistrationUpdate(metadata={})
            ),
            lambda: repository.create_registration(registration("newcomer")),
            lambda: repository.changes(),
        ]
        for call in calls:
            with pytest.raises(RegistryUnavailableError) as info:
                await call()
            assert info.value.__cause__ is not None

        await start_embedded(temp_data_dir)
        # Same process, same client: the pool reconnects on its own.
        fetched = await repository.get_registration("survivor")
        assert fetched is not None
        assert await repository.update_heartbeat("survivor") is True
        assert await repository.create_registration(registration("newcomer"))
        assert await repository.count_registrations() == 2
