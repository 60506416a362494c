"""A tool's page in Chromium: its registration, and a timeline of a tool that went critical
and recovered, drawn from the health history with the transitions listed."""

from __future__ import annotations

import pytest
from selenium.webdriver.support.ui import Select

from tests.ui.support import Console, HealthEndpoints, Registry, eventually

pytestmark = pytest.mark.browser


def _states(console: Console, lane: str) -> list[str]:
    states: list[str] = console.js(
        "return [...document.querySelectorAll('#timeline rect.band')]"
        ".filter(r => r.dataset.lane === arguments[0]).map(r => r.dataset.state)",
        lane,
    )
    return states


def test_timeline_of_a_tool_that_went_critical_and_recovered(
    console: Console, registry: Registry, health_endpoints: HealthEndpoints
) -> None:
    health_endpoints.statuses["/flaky"] = 200
    registry.put(
        "flaky-tool",
        "effect",
        capabilities={"operations": ["convert"], "max_file_size": 10_000_000},
        endpoints={"convert": "http://127.0.0.1:9/convert"},
        metadata={"team": "docs", "version": "2.1.0"},
        health_endpoint=health_endpoints.url("/flaky"),
    )
    eventually(
        lambda: (
            registry.http.get("/v1/tools/flaky-tool").json()["health"]["check_status"] == "passing"
        ),
        10,
        "a first passing check",
    )
    console.open("/ui/tool?id=flaky-tool")
    console.wait(lambda: console.text("#s-checks").startswith("passing"), what="passing checks")

    health_endpoints.statuses["/flaky"] = 503
    console.wait(lambda: console.text("#s-health") == "critical", timeout=10, what="critical")
    health_endpoints.statuses["/flaky"] = 200
    console.wait(lambda: console.text("#s-health") == "healthy", timeout=10, what="recovery")
    # Checks that pass are no event until they stop passing: before the first verdict the
    # history says unknown.
    console.wait(
        lambda: _states(console, "checks") == ["unknown", "critical", "passing"],
        what="the checks lane",
    )
    assert _states(console, "heartbeat")[-1] == "fresh"
    transitions = console.js(
        "return [...document.querySelectorAll('#transitions li')]"
        ".map(li => li.dataset.lane + ': ' + li.dataset.previous + ' -> ' + li.dataset.state)"
    )
    # Newest first.
    assert transitions == [
        "checks: critical -> passing",
        "checks: unknown -> critical",
        "heartbeat: unknown -> fresh",
    ]
    kinds = console.js(
        "return [...document.querySelectorAll('#changes li')].map(li => li.dataset.kind)"
    )
    assert kinds == ["passing", "critical", "created"]
    assert '"max_file_size": 10000000' in console.text("#j-capabilities")
    assert console.text("#j-endpoints").strip().startswith("{")
    # Bands are drawn over the 24 h axis with their states' colours (the legend's).
    fills = console.js(
        "return [...new Set([...document.querySelectorAll('#timeline rect.band')]"
        ".map(r => r.dataset.state + '=' + getComputedStyle(r).fill))]"
    )
    assert any(f.startswith("critical=rgb(198, 40, 40)") for f in fills)
    assert console.find("#timeline-svg").get_attribute("role") == "img"
    console.screenshot("tool-page-24h")
    Select(console.find("#window")).select_by_value("0.05")  # zoom in on the last 3 minutes
    console.wait(lambda: "hours=0.05" in console.driver.current_url, what="the window")
    console.wait(
        lambda: _states(console, "checks") == ["unknown", "critical", "passing"],
        what="the zoomed lane",
    )
    widths = console.js(
        "return [...document.querySelectorAll('#timeline rect.band[data-lane=checks]')]"
        ".map(r => parseFloat(r.getAttribute('width')))"
    )
    assert widths[0] > 500  # minutes of unknown before the first verdict, drawn wide
    console.screenshot("tool-page")


def test_unknown_tool_says_so(console: Console, registry: Registry) -> None:
    console.open("/ui/tool?id=no-such-tool")
    console.wait(lambda: console.find("#errors").is_displayed(), what="the error")
    assert "no-such-tool" in console.text("#errors")
