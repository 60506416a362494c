"""The Discover page in Chromium: the choice now, and why each declaring tool is or is not
routable (no endpoint, stale, critical), the same account as the API's 404."""

from __future__ import annotations

import pytest

from tests.ui.support import Console, HealthEndpoints, Registry, eventually

pytestmark = pytest.mark.browser


def _verdicts(console: Console) -> dict[str, str]:
    return dict(
        console.js(
            "return [...document.querySelectorAll('#verdicts-body tr')]"
            ".map(r => [r.dataset.toolId, r.dataset.reason])"
        )
    )


def test_discover_explains_each_tool(
    console: Console, registry: Registry, health_endpoints: HealthEndpoints
) -> None:
    endpoint = {"endpoints": {"render": "http://127.0.0.1:9/render"}}
    registry.put("r-good", "compute", capabilities={"operations": ["render"]}, **endpoint)
    registry.put("r-noendpoint", "compute", capabilities={"operations": ["render"]})
    registry.put("r-stale", "compute", capabilities={"operations": ["render"]}, **endpoint)
    health_endpoints.statuses["/r-sick"] = 500
    registry.put(
        "r-sick",
        "compute",
        capabilities={"operations": ["render"]},
        health_endpoint=health_endpoints.url("/r-sick"),
        **endpoint,
    )
    registry.heartbeat_at("r-stale", 120)
    eventually(
        lambda: registry.http.get("/v1/tools/r-sick").json()["health"]["status"] == "critical",
        10,
        "r-sick critical",
    )

    console.open("/ui/discover?op=render")
    expected = {
        "r-good": "routable",
        "r-noendpoint": "no_endpoint",
        "r-stale": "stale",
        "r-sick": "critical",
    }
    console.wait(lambda: _verdicts(console) == expected, timeout=10, what="the verdicts")
    assert console.find("#choice").get_attribute("data-chosen") == "r-good"
    # The page says what the API says.
    api = registry.http.get("/v1/discover/render/explain").json()
    assert console.text("#summary").startswith(api["summary"])
    details = dict(
        console.js(
            "return [...document.querySelectorAll('#verdicts-body tr')]"
            ".map(r => [r.dataset.toolId, r.children[2].textContent])"
        )
    )
    assert details == {v["tool_id"]: v["detail"] for v in api["tools"]}
    assert "since" in {k for v in api["tools"] if v["tool_id"] == "r-stale" for k in v}
    stale_since = console.find('#verdicts-body tr[data-tool-id="r-stale"] td:nth-of-type(3) time')
    assert stale_since.get_attribute("datetime")

    # The live ones go: the page follows and says nothing is routable, as the 404 does.
    registry.delete("r-good")
    registry.delete("r-noendpoint")
    console.wait(
        lambda: console.find("#choice").get_attribute("data-chosen") == "",
        what="no routable tool",
    )
    missing = registry.http.get("/v1/discover/render")
    assert missing.status_code == 404
    # The page may show "no routable tool" (r-good gone) a refresh before it has heard of
    # r-noendpoint's deletion, which the 404 already counts: wait for the same words.
    detail = missing.json()["detail"]
    console.wait(lambda: detail in console.text("#choice"), what="the 404's explanation")
    console.wait(
        lambda: _verdicts(console) == {"r-stale": "stale", "r-sick": "critical"},
        what="the verdicts left",
    )


def test_an_operation_nobody_declares(console: Console, registry: Registry) -> None:
    console.open("/ui/discover")
    field = console.find("#d-operation")
    assert console.find('label[for="d-operation"]').text == "Operation"
    field.send_keys("nobody-does-this\n")
    console.wait(lambda: console.find("#result").is_displayed(), what="the result")
    assert "no registered tool lists it" in console.text("#summary")
    assert _verdicts(console) == {}
