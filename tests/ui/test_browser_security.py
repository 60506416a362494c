"""Hostile registry values stay text in Chromium (no script runs, nothing becomes a link target),
the Content-Security-Policy is sent and in force, and /docs renders with no outside network."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import Server
from tests.ui.support import Console, Registry

pytestmark = pytest.mark.browser

SCRIPT = "<script>window.__pwned = 1; alert('script')</script>"
IMG = "<img src=x onerror=\"window.__pwned = 1; alert('img')\">"
JS_URL = "javascript:window.__pwned=1;alert('link')"
URL_SCRIPT = "http://127.0.0.1:9/<script>window.__pwned=1</script>"  # a valid URL still


@pytest.fixture(scope="module")
def hostile(registry: Registry) -> list[str]:
    registry.put(
        "javascript:alert",  # a valid tool_id that reads like a URL
        "effect",
        capabilities={"operations": [IMG, JS_URL], "note": SCRIPT},
        endpoints={"convert": URL_SCRIPT},
        metadata={"html": SCRIPT, "href": JS_URL, "img": IMG, "nested": {"x": [SCRIPT]}},
    )
    registry.put("plain-neighbour", "compute", capabilities={"operations": [IMG]})
    return ["javascript:alert", "plain-neighbour"]


def _inert(console: Console) -> None:
    """Nothing ran, nothing navigated, nothing of the payload became markup or a link."""
    assert console.js("return window.__pwned === undefined")  # an alert would raise here
    assert console.js("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    hrefs = console.js(
        "return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))"
    )
    assert all(h.startswith(("/", "#")) for h in hrefs), hrefs
    assert console.js("return [...document.scripts].every(s => s.src && !s.text)")


def test_payloads_render_as_text(console: Console, hostile: list[str]) -> None:
    console.open("/ui/")
    console.wait(lambda: set(hostile) <= set(console.rows()), what="the hostile rows")
    _inert(console)
    assert IMG in console.find('#tools-body tr[data-tool-id="plain-neighbour"]').text
    link = console.find('#tools-body tr[data-tool-id="javascript:alert"] a')
    href = link.get_attribute("href")
    assert href is not None and href.endswith("/ui/tool?id=javascript%3Aalert")
    link.click()  # our own page, not the payload
    console.wait(lambda: console.find("#summary").is_displayed(), what="the tool page")
    assert console.driver.current_url.endswith("/ui/tool?id=javascript%3Aalert")
    _inert(console)
    assert SCRIPT in console.text("#j-metadata")
    assert URL_SCRIPT in console.text("#j-endpoints")
    assert JS_URL in console.text("#j-capabilities")

    console.open("/ui/discover?op=" + httpx.URL("", params={"x": JS_URL}).query.decode()[2:])
    console.wait(
        lambda: console.find("#result").is_displayed() or console.find("#errors").is_displayed(),
        what="discover",
    )
    _inert(console)
    console.open("/ui/admin")
    _inert(console)


def test_bidi_overrides_and_invisible_characters_show_as_escapes(
    console: Console, registry: Registry
) -> None:
    """As the CLI shows them: a right-to-left override would make a JSON line or an
    operation's name read as something it is not ("abc" as "cba")."""
    rlo, zwsp = "\u202e", "\u200b"
    registry.put(
        "bidi-spoof",
        "effect",
        capabilities={"operations": [rlo + "abc", "stamp"]},
        metadata={"note": rlo + "evil", "url": "http://a.example/" + zwsp + "x"},
    )
    console.open("/ui/?tool_id_contains=bidi-spoof")
    console.wait(lambda: "bidi-spoof" in console.rows(), what="the row")
    row = console.text('#tools-body tr[data-tool-id="bidi-spoof"]')
    assert "\\u202eabc" in row and rlo not in row, row
    console.open("/ui/tool?id=bidi-spoof")
    console.wait(lambda: console.find("#summary").is_displayed(), what="the tool page")
    metadata = console.text("#j-metadata")
    # Still the JSON of the value: JSON reads the escapes back as the characters.
    assert json.loads(metadata) == {"note": rlo + "evil", "url": "http://a.example/" + zwsp + "x"}
    assert '"note": "\\u202eevil"' in metadata, metadata
    page = console.js("return document.body.innerText")
    assert rlo not in page and zwsp not in page
    console.open("/ui/tool?id=" + rlo + "x")  # a crafted link: the title shows it escaped
    console.wait(lambda: console.text("#tool-title") == "\\u202ex", what="the escaped title")


def test_csp_is_sent_and_enforced(
    console: Console, console_server: Server, hostile: list[str]
) -> None:
    for path in ("/ui/", "/ui/tool?id=x", "/ui/discover", "/ui/admin"):
        response = httpx.get(console_server.base_url + path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    redirect = httpx.get(console_server.base_url + "/")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
    console.open("/ui/")
    # An inline script that got into the page anyway is refused by the browser.
    console.js(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        "document.body.append(s);"
    )
    assert console.js("return window.__inline === undefined")
    assert any("Content Security Policy" in m for m in console.severe_logs())


def test_docs_render_offline(console: Console, console_server: Server) -> None:
    # Chromium here resolves no host name but 127.0.0.1 (see support.py): no CDN is reachable.
    console.open("/docs")
    console.wait(
        lambda: len(console.all(".opblock")) > 20, timeout=15, what="Swagger UI's operations"
    )
    paths = console.js(
        "return [...document.querySelectorAll('.opblock-summary-path')].map(p => p.textContent)"
    )
    assert "/v1/tools/{tool_id}/history" in [p.replace("\u200b", "") for p in paths]
    origin = console_server.base_url
    loaded = console.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(origin) for name in loaded), loaded
    html = httpx.get(origin + "/docs").text + httpx.get(origin + "/redoc").text
    assert "//" not in html.replace("<!doctype html>", "").split("<body>")[0].replace("http://", "")
    assert "cdn" not in html and "https://" not in html
    console.open("/redoc")
    console.wait(lambda: "Tool History" in console.text("body"), timeout=15, what="ReDoc")
    # ReDoc's bundle reaches for its logo on a CDN: the page's policy refuses it.
    loaded = console.js("return performance.getEntriesByType('resource').map(e => e.name)")
    refused = " ".join(m for m in console.severe_logs() if "Content Security Policy" in m)
    outside = [name for name in loaded if not name.startswith(origin)]
    assert all(name in refused for name in outside), (outside, refused)
