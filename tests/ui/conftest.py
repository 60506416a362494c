"""Fixtures of the web console's tests: one headless Chromium per session, a real
``toolreg serve`` per module, the browser on it, a seeded registry and health endpoints.
What they hand out lives in :mod:`tests.ui.support`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome as WebDriver

from tests.support import Server, start_server, stop_server
from tests.ui.support import (
    LIVE_ENV,
    Console,
    HealthEndpoints,
    Registry,
    chrome_missing,
    new_driver,
)


@pytest.fixture(scope="session")
def driver() -> Iterator[WebDriver]:
    reason = chrome_missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    chrome = new_driver()
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def console(driver: WebDriver, console_server: Server, tmp_path: Path) -> Iterator[Console]:
    """The browser on this module's server, its session storage empty."""
    page = Console(driver, console_server.base_url, tmp_path)
    driver.set_window_size(1280, 800)
    try:
        yield page
    finally:
        try:
            driver.get(console_server.base_url + "/ui/static/favicon.svg")
            driver.execute_script("sessionStorage.clear()")
        except WebDriverException:
            pass


@pytest.fixture(scope="module")
def console_env() -> dict[str, str]:
    """Extra environment of this module's server (a module overrides it)."""
    return {}


@pytest.fixture(scope="module")
def console_server(module_db: str, console_env: dict[str, str]) -> Iterator[Server]:
    running = start_server(module_db, env={**LIVE_ENV, **console_env})
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def registry(console_server: Server) -> Iterator[Registry]:
    seeded = Registry(console_server)
    try:
        yield seeded
    finally:
        seeded.close()


@pytest.fixture(scope="module")
def health_endpoints() -> Iterator[HealthEndpoints]:
    server = HealthEndpoints()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
