"""Keyset paging in Chromium: 2,500 tools walked page by page, each seen exactly once."""

from __future__ import annotations

import pytest

from tests.ui.support import Console, Registry

pytestmark = pytest.mark.browser

TOOLS = 2500
PAGE = 100


@pytest.fixture(scope="module")
def console_env() -> dict[str, str]:
    return {"TOOLREG_TTL_SECONDS": "600"}


@pytest.fixture(scope="module")
def seeded(registry: Registry) -> list[str]:
    ids = [f"page-tool-{i:05d}" for i in range(TOOLS)]
    registry.create_many(
        [
            {
                "tool_id": tool_id,
                "node_type": ("effect", "compute", "reducer", "orchestrator")[i % 4],
                "capabilities": {"operations": ["walk"], "n": i},
            }
            for i, tool_id in enumerate(ids)
        ]
    )
    return ids


def _page(console: Console, number: int) -> list[str]:
    """The ids of page ``number`` once it is shown (a live refresh may redraw it meanwhile)."""
    console.wait(
        lambda: console.js("return document.querySelector('#tools').dataset.page") == str(number),
        what=f"page {number}",
    )
    ids: list[str] = console.js(
        "return [...document.querySelectorAll('#tools-body tr')].map(r => r.dataset.toolId)"
    )
    return ids


def test_paging_walks_every_tool_once(console: Console, seeded: list[str]) -> None:
    console.open(f"/ui/?limit={PAGE}")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        ids = _page(console, pages)
        assert 0 < len(ids) <= PAGE  # never more than one page of rows in the browser
        seen.extend(ids)
        assert console.text("#count-total") == f"{TOOLS:,}"
        button = console.find("#page-next")
        if not button.is_enabled():
            break
        button.click()
    assert seen == seeded  # all of them, in tool_id order, none twice
    assert pages == TOOLS // PAGE
    # Back one page, then to the first.
    console.find("#page-prev").click()
    assert _page(console, pages - 1) == seeded[-2 * PAGE : -PAGE]
    console.find("#page-first").click()
    assert _page(console, 1) == seeded[:PAGE]


def test_paging_a_filtered_view(console: Console, seeded: list[str]) -> None:
    console.open(f"/ui/?limit={PAGE}&node_type=reducer&tool_id_contains=0")
    wanted = [t for i, t in enumerate(seeded) if i % 4 == 2 and "0" in t.removeprefix("page-tool-")]
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        ids = _page(console, pages)
        seen.extend(ids)
        if not console.find("#page-next").is_enabled():
            break
        console.find("#page-next").click()
    assert seen == wanted
