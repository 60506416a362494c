"""Admin in Chromium: the admin token kept in sessionStorage, tokens listed, created (the
secret shown once) and revoked, a tool deleted; read-only without it, and every write refused
without it; a registry whose reads need a token asks for one first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver import Chrome as WebDriver

from tests.support import Server, start_server, stop_server
from tests.ui.support import LIVE_ENV, Console, Registry

pytestmark = pytest.mark.browser


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_read_only_without_a_token(console: Console, registry: Registry) -> None:
    console.open("/ui/admin")
    console.wait(lambda: console.text("#admin-state").startswith("Read-only"), what="read-only")
    assert not console.find("#create-token").is_enabled()
    assert not console.find("#delete-submit").is_enabled()
    assert not console.find("#tokens").is_displayed()


def test_admin_creates_lists_and_revokes_tokens_and_deletes_a_tool(
    console: Console, registry: Registry, console_server: Server
) -> None:
    registry.put("doomed-tool", "effect")
    console.open("/ui/admin")
    console.find("#admin-token").send_keys(registry.admin + "\n")
    console.wait(lambda: console.find("#tokens").is_displayed(), what="the token list")
    # The token lives in this tab's sessionStorage: not in the URL, not in a cookie.
    assert console.js("return sessionStorage.getItem('toolreg.token')") == registry.admin
    assert registry.admin not in console.driver.current_url
    assert console.driver.get_cookies() == []
    assert "(admin)" in console.text("#who-name")
    page_text = console.js("return document.body.innerText")
    assert "trg_" not in page_text  # listed, never with secrets

    console.find("#new-name").send_keys("made-in-browser")
    console.find("#create-token").click()
    console.wait(lambda: console.find("#secret-box").is_displayed(), what="the secret")
    secret = console.text("#secret-value")
    assert secret.startswith("trg_")
    me = httpx.get(console_server.base_url + "/v1/tokens/me", headers=_bearer(secret))
    assert me.json()["name"] == "made-in-browser"
    assert me.json()["scope"] == "write"
    console.wait(
        lambda: console.all('#tokens-body tr[data-name="made-in-browser"]'), what="the new row"
    )
    console.find("#secret-done").click()
    assert console.text("#secret-value") == ""
    console.driver.refresh()
    console.wait(lambda: console.find("#tokens").is_displayed(), what="the token list")
    assert secret not in console.driver.page_source  # shown once, then gone for good

    revoke = console.find('#tokens-body tr[data-name="made-in-browser"] button')
    revoke.click()  # arms
    assert revoke.text == "Confirm revoke"
    revoke.click()
    console.wait(
        lambda: not console.all('#tokens-body tr[data-name="made-in-browser"]'), what="revoked"
    )
    assert (
        httpx.get(console_server.base_url + "/v1/tokens/me", headers=_bearer(secret)).status_code
        == 401
    )

    console.find("#delete-id").send_keys("doomed-tool")
    console.find("#delete-submit").click()
    console.wait(lambda: console.text("#delete-result") == "Deleted doomed-tool.", what="deleted")
    assert registry.http.get("/v1/tools/doomed-tool").status_code == 404


def test_tool_page_delete_button_for_admins_only(console: Console, registry: Registry) -> None:
    registry.put("page-doomed", "effect")
    console.open("/ui/tool?id=page-doomed")
    console.wait(lambda: console.find("#summary").is_displayed(), what="the tool")
    assert not console.find("#admin-tool").is_displayed()
    console.open("/ui/tool?id=page-doomed", token=registry.admin)
    console.wait(lambda: console.find("#admin-tool").is_displayed(), what="the admin section")
    console.find("#delete-tool").click()
    console.find("#delete-yes").click()
    console.wait(lambda: console.text("#delete-result") == "Deleted page-doomed.", what="deleted")
    console.wait(lambda: console.find("#errors").is_displayed(), what="the tool gone")


def test_every_write_is_refused_without_an_admin_token(
    console: Console, registry: Registry, console_server: Server
) -> None:
    registry.put("kept-tool", "effect")
    base = console_server.base_url
    writer = asyncio.run(console_server.token("write"))
    reader = asyncio.run(console_server.token("read"))
    for headers, status in (({}, 401), (_bearer(reader), 403), (_bearer(writer), 403)):
        assert httpx.get(base + "/v1/tokens", headers=headers).status_code == status
        made = httpx.post(base + "/v1/tokens", json={"scope": "admin"}, headers=headers)
        assert made.status_code == status
        assert httpx.delete(base + "/v1/tokens/anything", headers=headers).status_code == status
    assert httpx.delete(base + "/v1/tools/kept-tool").status_code == 401
    assert httpx.delete(base + "/v1/tools/kept-tool", headers=_bearer(reader)).status_code == 403
    assert httpx.delete(base + "/v1/tools/kept-tool", headers=_bearer(writer)).status_code == 403

    # In the browser, with a write token: the registry refuses, and the page says so.
    console.open("/ui/admin", token=writer)
    console.wait(lambda: "has scope write" in console.text("#admin-state"), what="the scope")
    console.wait(lambda: console.find("#tokens-error").is_displayed(), what="the refusal")
    assert "needs admin" in console.text("#tokens-error")
    console.find("#delete-id").send_keys("kept-tool")
    console.find("#delete-submit").click()
    console.wait(lambda: console.text("#delete-result").startswith("Not deleted"), what="refusal")
    assert registry.http.get("/v1/tools/kept-tool").status_code == 200


@pytest.fixture
def guarded_server(module_db: str) -> Iterator[Server]:
    server = start_server(module_db, env={**LIVE_ENV, "TOOLREG_READS_REQUIRE_TOKEN": "true"})
    try:
        yield server
    finally:
        stop_server(server)


def test_reads_require_token_asks_for_one_first(
    driver: WebDriver, guarded_server: Server, tmp_path: Path
) -> None:
    console = Console(driver, guarded_server.base_url, tmp_path)
    reader = asyncio.run(guarded_server.token("read", name="console-reader"))
    try:
        console.open("/ui/")
        console.wait(lambda: console.find("#token-gate").is_displayed(), what="the token gate")
        assert not console.find("#main").is_displayed()
        console.find("#gate-token").send_keys("trg_not-a-real-token\n")
        console.wait(lambda: console.find("#gate-error").is_displayed(), what="the refusal")
        field = console.find("#gate-token")
        field.clear()
        field.send_keys(reader + "\n")
        console.wait(
            lambda: console.js("return document.querySelector('#tools').dataset.loadedAt"),
            what="the table",
        )
        assert console.find("#main").is_displayed()
        assert "console-reader (read)" in console.text("#who-name")
        console.wait(
            lambda: console.find("#live").get_attribute("data-state") == "live-on",
            what="the feed, read with the token",
        )
    finally:
        console.open("/ui/static/favicon.svg")
        console.js("sessionStorage.clear()")
