"""deploy/ha/up and down as an operator runs them: etcd, two nodes, two registry replicas."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.ha.cluster import HaCluster, alive, missing_requirements, run_command
from tests.support import TOOLREG, clean_env

pytestmark = pytest.mark.ha


async def test_up_serves_through_every_replica_and_down_stops_everything() -> None:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    cluster = HaCluster(replicas=2)
    try:
        cluster.up()
        print(f"\ndeploy/ha/up: {cluster.up_seconds:.1f} s with two registry replicas")
        assert re.fullmatch(
            r"postgresql://toolreg:[0-9a-f]{32}@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/omninode_bridge"
            r"\?target_session_attrs=read-write",
            cluster.dsn,
        )
        primary = await cluster.wait_healthy()
        config = str(cluster.nodes[0].dir / "patroni.yml")
        listed = await run_command(cluster.env, "patronictl", "-c", config, "list")
        assert re.search(rf"{primary.name}\s.*Leader\s.*running", listed), listed
        assert "Sync Standby" in listed, listed

        created = await run_command(
            clean_env(DATABASE_URL=cluster.dsn),
            *(TOOLREG, "token", "create", "--name", "operator", "--scope", "write"),
        )
        headers = {"Authorization": f"Bearer {created.strip().splitlines()[-1]}"}
        first, second = cluster.registry_urls
        async with httpx.AsyncClient(timeout=10, headers=headers) as http:
            for url in cluster.registry_urls:
                assert (await http.get(url + "/ready")).json()["status"] == "ready"
            tool = {"tool_id": "deployed", "node_type": "effect"}
            assert (await http.post(first + "/v1/tools", json=tool)).status_code == 201
            assert (await http.get(second + "/v1/tools/deployed")).status_code == 200
        pids = [int((cluster.root / f"registry{i}.pid").read_text()) for i in (1, 2)]
        pids += [int((cluster.root / "etcd" / "pid").read_text())]
        for node in cluster.nodes:
            pids += [node.patroni_pid() or 0, node.postmaster_pid() or 0]
        assert all(alive(pid) for pid in pids), pids
    finally:
        cluster.down(purge=False)
    assert not [pid for pid in pids if alive(pid)], "deploy/ha/down left processes running"
    cluster.down(purge=True)
    assert not cluster.root.exists()
