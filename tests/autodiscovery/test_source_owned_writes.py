"""An admin's write over an etcd-owned tool: 409 naming the source, unless ?force=true."""

from __future__ import annotations

from pathlib import Path

import aetcd
import httpx
import orjson

from omninode_bridge.services import ToolRegistrationRepository
from omninode_bridge.services.tokens import TokenService
from tests.autodiscovery.helpers import Bridges, metric, registration_value, wait_until
from tests.liveness.servers import spawn, stop


async def test_an_admin_write_over_a_source_owned_tool_is_refused_unless_forced(
    bridges: Bridges,
    etcd_client: aetcd.Client,
    repository: ToolRegistrationRepository,
    db_dsn: str,
    tmp_path: Path,
) -> None:
    bridge = await bridges.run()
    source_owner = f"source:etcd:{bridges.prefix}"
    await etcd_client.put(f"{bridges.prefix}svc".encode(), registration_value("svc"))

    async def registered() -> bool:
        return await repository.get_owner("svc") == source_owner

    await wait_until(registered)
    before = await repository.get_registration("svc")
    admin = await TokenService(repository.client).create("ops", "admin")
    headers = {"authorization": f"Bearer {admin.secret}"}
    body = orjson.loads(registration_value("svc", capabilities={"region": "us"}))
    server = spawn(db_dsn, tmp_path / "server.log", {})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            put = await http.put("/v1/tools/svc", json=body)
            assert put.status_code == 409, put.text
            problem = put.json()
            assert problem["owner"] == source_owner
            assert bridges.prefix in problem["detail"] and "force=true" in problem["detail"]
            patch = await http.patch("/v1/tools/svc", json={"metadata": {"by": "admin"}})
            assert patch.status_code == 409 and patch.json()["owner"] == source_owner
            assert await repository.get_registration("svc") == before  # nothing drifted
            assert await repository.get_owner("svc") == source_owner

            forced = await http.put("/v1/tools/svc", params={"force": "true"}, json=body)
            assert forced.status_code == 200, forced.text
            assert forced.json()["capabilities"] == {"region": "us"}
            assert await repository.get_owner("svc") == f"token:{admin.info.id}"
            # The token now owns it: its own writes need no force.
            patched = await http.patch("/v1/tools/svc", json={"metadata": {"by": "admin"}})
            assert patched.status_code == 200
    finally:
        stop(server)
    # The bridge no longer owns it: its refresh leaves the admin's content alone.
    await bridge.refresh()
    after = await repository.get_registration("svc")
    assert after is not None and after.capabilities == {"region": "us"}
    assert metric(
        bridge.metrics, "toolreg_autodiscovery_conflicts_total", source=bridge.source.name
    )
