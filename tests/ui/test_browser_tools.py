"""The tools page in Chromium: seeded tools with their health, the counts, the filters, and the
capability / ``where`` search with the API's own validation messages."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.ui.support import Console, HealthEndpoints, Registry

pytestmark = pytest.mark.browser

EXPECTED = {
    "alpha-convert": "healthy",
    "alpha-resize": "healthy",
    "beta-index": "healthy",
    "beta-summarize": "healthy",
    "gamma-big": "healthy",
    "gamma-small": "healthy",
    "old-1": "stale",
    "old-2": "stale",
    "sick-1": "critical",
}


@pytest.fixture(scope="module")
def console_env() -> dict[str, str]:
    return {"TOOLREG_TTL_SECONDS": "600"}  # the healthy stay healthy for the whole module


@pytest.fixture(scope="module")
def seeded(registry: Registry, health_endpoints: HealthEndpoints) -> dict[str, str]:
    def ops(*names: str) -> dict[str, object]:
        return {
            "capabilities": {"operations": list(names)},
            "endpoints": {n: f"http://127.0.0.1:9/{n}" for n in names},
        }

    registry.put("alpha-convert", "compute", **ops("convert"))
    registry.put("alpha-resize", "effect", **ops("resize", "convert"))
    registry.put("beta-index", "reducer", **ops("index"))
    registry.put("beta-summarize", "orchestrator", **ops("summarize"))
    registry.put(
        "gamma-big",
        "compute",
        capabilities={"operations": ["convert"], "max_file_size": 50_000_000, "formats": ["pdf"]},
    )
    registry.put(
        "gamma-small",
        "compute",
        capabilities={"operations": ["convert"], "max_file_size": 1_000, "formats": ["png"]},
    )
    registry.put("old-1", "effect", **ops("convert"))
    registry.put("old-2", "compute", **ops("index"))
    health_endpoints.statuses["/sick"] = 500
    registry.put(
        "sick-1", "effect", **ops("convert"), health_endpoint=health_endpoints.url("/sick")
    )
    registry.heartbeat_at("old-1", 700)
    registry.heartbeat_at("old-2", 900)
    return EXPECTED


def _loaded(console: Console) -> None:
    console.wait(
        lambda: console.js("return document.querySelector('#tools').dataset.loadedAt"),
        what="the table",
    )


def _open(console: Console, **filters: str) -> dict[str, str]:
    console.open("/ui/" + ("?" + urlencode(filters) if filters else ""))
    _loaded(console)
    return console.rows()


def test_table_lists_seeded_tools_with_health_and_counts(
    console: Console, seeded: dict[str, str]
) -> None:
    console.open("/ui/")
    # Stale comes from the liveness sweep, critical from two failed checks: both within seconds.
    console.wait(lambda: console.rows() == seeded, timeout=15, what="every tool with its health")
    counts = {k: console.text(f"#count-{k}") for k in ("total", "healthy", "stale", "critical")}
    assert counts == {"total": "9", "healthy": "6", "stale": "2", "critical": "1"}
    row = console.find('#tools-body tr[data-tool-id="alpha-resize"]')
    cells = [c.text for c in row.find_elements("css selector", "th, td")]
    assert cells[:4] == ["alpha-resize", "effect", "resize\nconvert", "healthy"]
    assert cells[4].endswith(" s ago")
    assert cells[5].startswith("token ")  # the admin token that registered it
    heartbeat = row.find_element("css selector", "time")
    assert heartbeat.get_attribute("title")  # the exact time on hover
    classes = console.find('#tools-body tr[data-tool-id="old-1"]').get_attribute("class")
    assert "stale" in (classes or "")
    assert console.find("#live").get_attribute("data-state") == "live-on"
    console.screenshot("tools-page")


def test_filters_narrow_the_table(console: Console, seeded: dict[str, str]) -> None:
    assert set(_open(console, node_type="compute")) == {
        "alpha-convert",
        "gamma-big",
        "gamma-small",
        "old-2",
    }
    assert set(_open(console, operation="resize")) == {"alpha-resize"}
    assert _open(console, health="stale") == {"old-1": "stale", "old-2": "stale"}
    assert _open(console, health="critical") == {"sick-1": "critical"}
    assert set(_open(console, tool_id_contains="ALPHA")) == {"alpha-convert", "alpha-resize"}
    assert set(_open(console, tool_id_contains="a-", health="healthy")) == {
        "alpha-convert",
        "alpha-resize",
        "beta-index",
        "beta-summarize",
        "gamma-big",
        "gamma-small",
    }
    assert set(_open(console, node_type="effect", operation="convert")) == {
        "alpha-resize",
        "old-1",
        "sick-1",
    }


def test_filter_form_by_keyboard(console: Console, seeded: dict[str, str]) -> None:
    _open(console)
    Select(console.find("#f-node-type")).select_by_value("reducer")
    field = console.find("#f-text")
    field.send_keys("beta", Keys.ENTER)  # Enter submits: no mouse needed
    console.wait(lambda: "node_type=reducer" in console.driver.current_url, what="the new URL")
    _loaded(console)
    assert console.rows() == {"beta-index": "healthy"}
    assert console.find("#f-text").get_attribute("value") == "beta"
    # Every input has a label.
    unlabeled = console.js(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(i => !document.querySelector('label[for=\"' + i.id + '\"]')).map(i => i.id)"
    )
    assert unlabeled == []


def test_capability_and_where_search(console: Console, seeded: dict[str, str]) -> None:
    assert set(_open(console, capabilities='{"formats": ["pdf"]}')) == {"gamma-big"}
    assert set(_open(console, where="$.max_file_size >= 5000000")) == {"gamma-big"}
    assert set(
        _open(console, where="$.max_file_size > 0", capabilities='{"formats": ["png"]}')
    ) == {"gamma-small"}
    assert set(_open(console, capabilities='{"operations": ["index"]}', health="stale")) == {
        "old-2"
    }


@pytest.mark.parametrize(
    ("filters", "body"),
    [
        ({"where": "$.max_file_size >"}, {"where": "$.max_file_size >"}),
        ({"capabilities": "[1, 2]"}, {"capabilities": [1, 2]}),
    ],
)
def test_search_errors_are_the_apis(
    console: Console,
    registry: Registry,
    seeded: dict[str, str],
    filters: dict[str, str],
    body: dict[str, object],
) -> None:
    api = registry.http.post("/v1/tools/search", json=body)
    assert api.status_code == 422
    expected = [f"{e['field']}: {e['message']}" for e in api.json()["errors"]]
    console.open("/ui/?" + urlencode(filters))
    console.wait(lambda: console.find("#errors").is_displayed(), what="the error")
    shown = console.js(
        "return [...document.querySelectorAll('#errors li')].map(li => li.textContent)"
    )
    assert shown == expected


def test_malformed_capability_json_is_named(console: Console, seeded: dict[str, str]) -> None:
    console.open("/ui/?" + urlencode({"capabilities": '{"formats": '}))
    console.wait(lambda: console.find("#errors").is_displayed(), what="the error")
    assert console.find("#errors li").text.startswith("capabilities: is not valid JSON")


def test_phone_width(console: Console, seeded: dict[str, str]) -> None:
    console.driver.set_window_size(390, 844)
    _open(console)
    width = console.js("return document.documentElement.scrollWidth")
    assert width <= 390  # the table scrolls inside its own box, the page does not
    assert console.find("#f-text").is_displayed()
