"""With reads behind a token, Consul clients authenticate the Consul way."""

from __future__ import annotations

from collections.abc import Iterator

import consul
import httpx
import pytest

from tests.support import Server, running_server


@pytest.fixture(scope="module")
def guarded(module_db: str) -> Iterator[Server]:
    with running_server(module_db, env={"TOOLREG_READS_REQUIRE_TOKEN": "true"}) as running:
        yield running


async def test_x_consul_token_and_the_token_parameter_work_like_bearer(guarded: Server) -> None:
    secret = await guarded.token("read")
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=10) as http:
        for path in ("/v1/catalog/services", "/v1/health/service/x", "/v1/sd/prometheus"):
            assert (await http.get(path)).status_code == 401
            wrong = await http.get(path, headers={"X-Consul-Token": "trg_wrong"})
            assert wrong.status_code == 401
        ok = await http.get("/v1/catalog/services", headers={"X-Consul-Token": secret})
        assert ok.status_code == 200
        assert (await http.get("/v1/health/service/x", params={"token": secret})).status_code == 200
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await http.get("/v1/sd/prometheus", headers=bearer)).status_code == 200
    host, port = guarded.base_url.removeprefix("http://").split(":")
    index, services = consul.Consul(host=host, port=int(port), token=secret).catalog.services()
    assert int(index) >= 1 and isinstance(services, dict)
