"""Tool-id squatting: a source does not claim an id another owner released, without consent."""

from __future__ import annotations

import asyncio

import aetcd
import orjson

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import ToolRegistrationRepository
from tests.autodiscovery.helpers import (
    Bridges,
    metric,
    registration_value,
    until_metric,
    wait_until,
)
from tests.support import clean_env, run_cli

OTHER = "token:00000000-0000-0000-0000-000000000001"  # an HTTP registration's owner


async def test_an_id_released_by_another_owner_waits_for_an_admins_consent(
    bridges: Bridges,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
    db_dsn: str,
) -> None:
    source = f"etcd:{bridges.prefix}"
    await repository.create_registration(
        ModelToolRegistrationCreate(tool_id="svc", node_type="effect"), owner=OTHER
    )
    bridge = await bridges.run()
    assert await repository.delete_registration("svc", "gone", owner=OTHER)

    await etcd_client.put(f"{bridges.prefix}svc".encode(), registration_value("svc"))
    name = "toolreg_autodiscovery_claims_held_total"
    await until_metric(bridge.metrics, name, 1, source=source)
    await asyncio.sleep(1.0)  # what used to be enough for the key to take the id
    assert await repository.get_registration("svc") is None
    await bridge.refresh()  # retried at every refresh, still held
    assert await repository.get_registration("svc") is None
    assert metric(bridge.metrics, "toolreg_autodiscovery_held_claims", source=source) == 1

    env = clean_env(DATABASE_URL=db_dsn)
    status = run_cli("autodiscover", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "svc" in status.stdout and OTHER in status.stdout and source in status.stdout
    as_json = orjson.loads(run_cli("autodiscover", "status", "--json", env=env).stdout)
    (held,) = as_json["held_claims"]
    assert (held["tool_id"], held["released_by"], held["claimed_by"]) == (
        "svc",
        OTHER,
        f"source:{source}",
    )

    allowed = run_cli("autodiscover", "allow", "svc", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert OTHER in allowed.stdout
    await bridge.refresh()  # the next refresh claims it
    assert await repository.get_owner("svc") == f"source:{source}"
    assert metric(bridge.metrics, "toolreg_autodiscovery_held_claims", source=source) == 0
    status = run_cli("autodiscover", "status", "--json", env=env)
    assert orjson.loads(status.stdout)["held_claims"] == []

    # Its own id comes back to the same source at once: nothing to consent to.
    await etcd_client.delete(f"{bridges.prefix}svc".encode())

    async def gone() -> bool:
        return await repository.get_registration("svc") is None

    await wait_until(gone)
    await etcd_client.put(f"{bridges.prefix}svc".encode(), registration_value("svc"))

    async def back() -> bool:
        return await repository.get_owner("svc") == f"source:{source}"

    await wait_until(back)
    assert metric(bridge.metrics, name, source=source) == 1


async def test_a_reaped_id_is_held_too_and_a_setting_lets_sources_claim_at_once(
    bridges: Bridges,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
) -> None:
    await repository.create_registration(
        ModelToolRegistrationCreate(tool_id="old", node_type="effect"), owner=OTHER
    )
    await repository.client.execute(
        "UPDATE tool_registrations SET last_heartbeat = now() - interval '2 hours'"
    )
    reaped = await repository.client.fetchrow(
        "SELECT * FROM tool_registrations WHERE tool_id = 'old'"
    )
    assert reaped is not None
    from omninode_bridge.liveness.reaper import Q

    row = await repository.client.fetchrow(Q["reap"], ["old"], 3600.0, None, "liveness")
    assert row is not None and list(row["tool_ids"]) == ["old"]
    held = await bridges.run()
    await etcd_client.put(f"{bridges.prefix}old".encode(), registration_value("old"))
    await until_metric(
        held.metrics, "toolreg_autodiscovery_claims_held_total", 1, source=f"etcd:{bridges.prefix}"
    )
    assert await repository.get_registration("old") is None
    await bridges.stop(held)

    free = await bridges.start(bridges.make(claim_hold_seconds=0))  # TOOLREG_..._CLAIM_RELEASED

    async def claimed() -> bool:
        return await repository.get_registration("old") is not None

    await wait_until(claimed)
    assert await repository.get_owner("old") == free.owner
