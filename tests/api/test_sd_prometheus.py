"""Prometheus HTTP service discovery, read by Debian's real Prometheus.

Prometheus 2.42 from Debian is built without Consul discovery, so
``http_sd_configs`` is how it finds the registry's tools. The test starts it
with a job pointing at ``/v1/sd/prometheus`` and reads ``/api/v1/targets``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server, bearer, free_port, running_server, terminate

PROMETHEUS = shutil.which("prometheus")
CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: toolreg
    http_sd_configs:
      - url: {registry}/v1/sd/prometheus
        refresh_interval: 1s
"""


@pytest.fixture(scope="module")
def registry(module_db: str) -> Iterator[Server]:
    with running_server(module_db) as running:
        yield running


def metrics_tool(tool_id: str, registry: Server, **extra: Any) -> dict[str, Any]:
    """A tool whose metrics endpoint is the registry's own /metrics (so the scrape is up)."""
    return {
        "tool_id": tool_id,
        "node_type": "effect",
        "capabilities": {"operations": ["stamp", "hash"]},
        "endpoints": {
            "stamp": "http://10.0.0.9:8053/stamp",
            "metrics": f"{registry.base_url}/metrics",
        },
        "metadata": {"team": "ingest", "replicas": 2},
        **extra,
    }


async def _served(
    http: httpx.AsyncClient, tool_id: str, **params: str
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """The answer that first lists ``tool_id`` (the live view follows the feed, a few
    milliseconds behind), and ``tool_id``'s target groups in it; ``params``: filters."""
    for _ in range(200):
        response = await http.get("/v1/sd/prometheus", params=params)
        ours = [g for g in response.json() if g["labels"]["__meta_toolreg_tool_id"] == tool_id]
        if ours:
            return response, ours
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tool_id} never listed")


async def test_the_target_groups_are_what_prometheus_expects(registry: Server, uid: str) -> None:
    token = bearer(await registry.token("write"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        tool_id = f"sd-{uid}"
        body = metrics_tool(tool_id, registry)
        assert (await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)).is_success
        no_metrics = {**body, "tool_id": f"plain-{uid}", "endpoints": {"stamp": "http://h/s"}}
        assert (await http.put(f"/v1/tools/plain-{uid}", json=no_metrics, headers=token)).is_success
        response, groups = await _served(http, tool_id, operation="stamp")
        assert response.headers["content-type"] == "application/json"
        host_port = registry.base_url.removeprefix("http://")
        assert groups == [
            {
                "targets": [host_port],
                "labels": {
                    "__scheme__": "http",
                    "__metrics_path__": "/metrics",
                    "__meta_toolreg_tool_id": tool_id,
                    "__meta_toolreg_node_type": "effect",
                    "__meta_toolreg_health": "healthy",
                    "__meta_toolreg_operation_stamp": "true",
                    "__meta_toolreg_operation_hash": "true",
                    "__meta_toolreg_metadata_team": "ingest",
                },
            }
        ]
        ids = {g["labels"]["__meta_toolreg_tool_id"] for g in response.json()}
        assert f"plain-{uid}" not in ids  # no metrics endpoint, no target
        none = await http.get("/v1/sd/prometheus", params={"node_type": "reducer"})
        assert none.json() == []
        bad = await http.get("/v1/sd/prometheus", params={"node_type": "nope"})
        assert bad.status_code == 422


async def test_colliding_names_get_no_label_and_a_valid_name_keeps_its_own(
    registry: Server, uid: str
) -> None:
    token = bearer(await registry.token("write"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        tool_id = f"clash-{uid}"
        body = metrics_tool(tool_id, registry)
        body["capabilities"] = {"operations": ["stamp", "x-y", "x.y", "p.q"]}
        body["metadata"] = {"a-b": "dash", "a.b": "dot", "c_d": "exact", "c-d": "dash", "e.f": "1"}
        assert (await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)).is_success
        _, (group,) = await _served(http, tool_id)
        labels = {k: v for k, v in group["labels"].items() if k.startswith("__meta_toolreg_")}
        assert labels == {
            "__meta_toolreg_tool_id": tool_id,
            "__meta_toolreg_node_type": "effect",
            "__meta_toolreg_health": "healthy",
            "__meta_toolreg_operation_stamp": "true",
            "__meta_toolreg_operation_p_q": "true",  # alone after reduction: kept
            "__meta_toolreg_metadata_c_d": "exact",  # its own name, whatever reduces onto it
            "__meta_toolreg_metadata_e_f": "1",
        }


async def test_the_metrics_url_port_query_and_userinfo(registry: Server, uid: str) -> None:
    token = bearer(await registry.token("write"))
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        urls = {
            f"zero-{uid}": "http://10.0.0.9:0/metrics",  # not a scrape port: not a target
            f"query-{uid}": "https://ops:s3cret@10.0.0.9/m?module=http_2xx&x=1&x=2&bad-name=3",
        }
        for tool_id, url in urls.items():
            body = metrics_tool(tool_id, registry)
            body["endpoints"] = {"metrics": url}
            assert (await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)).is_success
        _, (group,) = await _served(http, f"query-{uid}")  # after the port-0 tool in the feed
        ids = {
            g["labels"]["__meta_toolreg_tool_id"]
            for g in (await http.get("/v1/sd/prometheus")).json()
        }
        assert f"zero-{uid}" not in ids
        assert group["targets"] == ["10.0.0.9:443"]
        assert {k: v for k, v in group["labels"].items() if not k.startswith("__meta_")} == {
            "__scheme__": "https",
            "__metrics_path__": "/m",
            "__param_module": "http_2xx",
            "__param_x": "1",  # Prometheus sends one value per parameter label
        }
        assert "s3cret" not in (await http.get("/v1/sd/prometheus")).text


async def _targets(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/targets")
    response.raise_for_status()
    active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
    return active


def start_prometheus(folder: Path, registry: Server) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's Prometheus with one http_sd job on the registry (its config checked first),
    answering ``/-/ready``. A port taken between choosing and binding it (a busy CI) is
    retried on another; a Prometheus that cannot start fails with its own log."""
    assert PROMETHEUS is not None
    config = folder / "prometheus.yml"
    config.write_text(CONFIG.format(registry=registry.base_url))
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log_path = folder / "prometheus.log"
    for _ in range(3):
        port = free_port()
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                    return process, port
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        terminate(process)
    raise AssertionError(f"Prometheus did not start: {log_path.read_text()[-2000:]}")


async def _ours(prom: httpx.AsyncClient, tool_id: str) -> list[dict[str, Any]]:
    try:
        targets = await _targets(prom)
    except (httpx.TransportError, httpx.HTTPStatusError):
        return []  # Prometheus is still starting (refused, or 503 until its storage is open)
    return [t for t in targets if t["discoveredLabels"].get("__meta_toolreg_tool_id") == tool_id]


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not installed")
async def test_real_prometheus_discovers_scrapes_and_drops_tools(
    registry: Server, uid: str
) -> None:
    token = bearer(await registry.token("write"))
    folder = Path(tempfile.mkdtemp(prefix="toolreg-prom-"))
    process, port = await asyncio.to_thread(start_prometheus, folder, registry)
    tool_id = f"prom-{uid}"
    try:
        async with (
            httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as prom,
        ):
            body = metrics_tool(tool_id, registry)
            body["endpoints"]["metrics"] += "?probe=sd"  # carried as __param_probe
            assert (await http.put(f"/v1/tools/{tool_id}", json=body, headers=token)).is_success
            ours: list[dict[str, Any]] = []
            for _ in range(600):  # discovered and scraped once (1 s intervals; a busy CI is slow)
                ours = await _ours(prom, tool_id)
                if ours and ours[0]["health"] != "unknown":
                    break
                await asyncio.sleep(0.3)
            if not ours:  # say which side lost it: the registry's answer, Prometheus's view
                served = (await http.get("/v1/sd/prometheus")).text
                seen = (await prom.get("/api/v1/targets")).text
                log = (folder / "prometheus.log").read_text()[-3000:]
                raise AssertionError(
                    f"Prometheus never listed the tool.\nregistry: {served[:2000]}\n"
                    f"prometheus targets: {seen[:2000]}\nprometheus log: {log}"
                )
            target = ours[0]
            assert target["scrapePool"] == "toolreg"
            assert target["scrapeUrl"] == f"{registry.base_url}/metrics?probe=sd"
            assert target["discoveredLabels"]["__meta_toolreg_node_type"] == "effect"
            assert target["discoveredLabels"]["__meta_toolreg_operation_stamp"] == "true"
            assert target["health"] != "unknown", target

            assert (await http.delete(f"/v1/tools/{tool_id}", headers=token)).status_code == 204
            for _ in range(200):
                if not await _ours(prom, tool_id):
                    break
                await asyncio.sleep(0.3)
            assert not await _ours(prom, tool_id), "Prometheus kept a deleted tool"
    finally:
        await asyncio.to_thread(terminate, process)
        shutil.rmtree(folder, ignore_errors=True)
