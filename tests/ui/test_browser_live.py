"""The tools page follows the change feed: changes show within 2 s without a reload, and after a
server restart the page reconnects with Last-Event-ID and misses nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from selenium.webdriver import Chrome as WebDriver

from tests.support import free_port, start_server, stop_server
from tests.ui.support import LIVE_ENV, Console, Registry

pytestmark = pytest.mark.browser

TTL = 30.0
LIVE_WITHIN = 2.0


def _live(console: Console) -> None:
    console.wait(
        lambda: console.find("#live").get_attribute("data-state") == "live-on", what="live"
    )


def _timed(console: Console, condition: str, what: str, timeout: float = 10.0) -> float:
    started = time.monotonic()
    console.wait(lambda: console.js(condition), timeout=timeout, what=what)
    return time.monotonic() - started


def _health(tool_id: str) -> str:
    """A JavaScript expression: the row's health, or null without a row."""
    row = f"document.querySelector('#tools-body tr[data-tool-id=\"{tool_id}\"]')"
    return f"({row} ? {row}.dataset.health : null)"


def test_register_delete_and_expiry_show_without_reload(
    console: Console, registry: Registry
) -> None:
    registry.put("live-base", "compute")
    console.open("/ui/")
    _live(console)
    console.js("window.__sameDocument = true")

    registry.put("live-new", "effect", capabilities={"operations": ["convert"]})
    took = _timed(console, f"return ({_health('live-new')}) === 'healthy'", "the new tool")
    assert took < LIVE_WITHIN
    assert console.text("#count-total") == "2"

    registry.delete("live-new")
    took = _timed(console, f"return ({_health('live-new')}) === null", "the deleted tool to go")
    assert took < LIVE_WITHIN

    # A heartbeat that expires a second from now: stale shows within 2 s of the expiry.
    registry.put("live-expiring", "reducer")
    _timed(console, f"return ({_health('live-expiring')}) === 'healthy'", "the expiring tool")
    registry.heartbeat_at("live-expiring", TTL - 1.0)
    expires = time.monotonic() + 1.0
    console.wait(
        lambda: console.js(f"return ({_health('live-expiring')}) === 'stale'"),
        timeout=10,
        what="stale",
    )
    assert time.monotonic() - expires < LIVE_WITHIN
    row = console.find('#tools-body tr[data-tool-id="live-expiring"]')
    assert "row-stale" in (row.get_attribute("class") or "")  # greyed out
    assert console.text("#count-stale") == "1"
    assert console.js("return window.__sameDocument") is True  # never reloaded
    kinds = console.js(
        "return [...document.querySelectorAll('#activity li')]"
        ".map(li => li.dataset.kind + ' ' + li.dataset.toolId)"
    )
    assert kinds[:3] == ["stale live-expiring", "created live-expiring", "deleted live-new"]


def test_reconnects_after_a_restart_and_catches_up(
    driver: WebDriver, module_db: str, tmp_path: Path
) -> None:
    port = free_port()
    server = start_server(module_db, env=LIVE_ENV, port=port)
    try:
        registry = Registry(server)
        registry.put("restart-keep", "compute")
        registry.put("restart-gone", "compute")
        console = Console(driver, server.base_url, tmp_path)
        console.open("/ui/")
        _live(console)
        console.js("window.__sameDocument = true")

        stop_server(server)
        console.wait(
            lambda: console.find("#live").get_attribute("data-state") == "reconnecting",
            what="the reconnecting indicator",
        )
        # While the server is down, the registry changes (straight in the database).
        registry.create_many(
            [{"tool_id": f"restart-new-{i}", "node_type": "effect"} for i in range(3)]
        )
        registry._repository(lambda repo: repo.delete_registration("restart-gone"))

        server = start_server(module_db, env=LIVE_ENV, port=port)
        registry.server = server
        _live(console)
        console.wait(
            lambda: (
                set(console.rows())
                >= {"restart-keep", "restart-new-0", "restart-new-1", "restart-new-2"}
                and "restart-gone" not in console.rows()
            ),
            timeout=10,
            what="the changes made during the restart",
        )
        # Every event of the outage replayed once, in order: nothing missed, nothing twice.
        log = console.js(
            "return [...document.querySelectorAll('#activity li')].reverse()"
            ".map(li => li.dataset.kind + ' ' + li.dataset.toolId)"
        )
        outage = [e for e in log if "restart-new" in e or e.startswith("deleted")]
        assert outage == [
            "created restart-new-0",
            "created restart-new-1",
            "created restart-new-2",
            "deleted restart-gone",
        ]
        assert console.js("return window.__sameDocument") is True
        registry.close()
    finally:
        stop_server(server)
