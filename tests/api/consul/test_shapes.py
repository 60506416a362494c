"""The three read endpoints against the field names and types of Consul's API documentation.

Go clients (Prometheus) fail a whole answer over one wrongly typed field:
``Service.Port`` must be an integer, every ``Meta`` value a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.consul.helpers import until_listed
from tests.support import Server, bearer, running_server

NODE = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta"}
SERVICE = {"ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "Weights"}
CHECK = {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
         "ServiceTags"}  # fmt: skip
CATALOG = {
    "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceID",
    "ServiceName", "ServiceAddress", "ServicePort", "ServiceTags", "ServiceMeta",
    "ServiceTaggedAddresses", "ServiceWeights", "ServiceEnableTagOverride", "CreateIndex",
    "ModifyIndex",
}  # fmt: skip


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    with running_server(module_db) as running:
        yield running


def _strings(mapping: Any) -> bool:
    return isinstance(mapping, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    )


async def test_shapes_and_types_match_consuls_documentation(registry: Server, uid: str) -> None:
    token = bearer(await registry.token("write"))
    service = f"shape-{uid}"
    body = {
        "tool_id": f"{service}-1",
        "node_type": "reducer",
        "capabilities": {"operations": [service]},
        "endpoints": {service: "https://shapes.internal/x"},  # no port: 443
        "metadata": {"n": 1.5, "flag": True, "list": [1], "obj": {"a": "b"}, "tags": ["t1"]},
        "health_endpoint": "https://shapes.internal/health",
    }
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        assert (await http.put(f"/v1/tools/{service}-1", json=body, headers=token)).is_success

        await until_listed(registry.base_url, service, 1)
        services = (await http.get("/v1/catalog/services")).json()
        assert isinstance(services, dict)
        assert all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in services.values()
        )
        assert services[service] == ["reducer", "t1"]

        health = (await http.get(f"/v1/health/service/{service}")).json()
        assert len(health) == 1
        entry = health[0]
        assert set(entry) == {"Node", "Service", "Checks"}
        assert set(entry["Node"]) >= NODE
        assert _strings(entry["Node"]["Meta"]) and _strings(entry["Node"]["TaggedAddresses"])
        assert set(entry["Service"]) >= SERVICE
        assert entry["Service"]["Port"] == 443 and isinstance(entry["Service"]["Port"], int)
        assert _strings(entry["Service"]["Meta"])
        assert entry["Service"]["Meta"]["n"] == "1.5" and entry["Service"]["Meta"]["flag"] == "true"
        assert "list" not in entry["Service"]["Meta"] and "obj" not in entry["Service"]["Meta"]
        assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
        for check in entry["Checks"]:
            assert set(check) >= CHECK
            assert check["Status"] in ("passing", "warning", "critical", "maintenance")

        catalog = (await http.get(f"/v1/catalog/service/{service}")).json()
        assert len(catalog) == 1
        assert set(catalog[0]) >= CATALOG
        assert isinstance(catalog[0]["ServicePort"], int)
        assert _strings(catalog[0]["ServiceMeta"]) and _strings(catalog[0]["NodeMeta"])
        assert isinstance(catalog[0]["CreateIndex"], int)
        assert isinstance(catalog[0]["ModifyIndex"], int)

        node_type = (await http.get("/v1/health/service/node-type:reducer")).json()
        assert f"{service}-1" in [e["Service"]["ID"] for e in node_type]
