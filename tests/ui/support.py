"""What the console's tests share besides fixtures: headless Chromium for them
(:func:`new_driver`), the browser on a console page (:class:`Console`), seeding a
server's registry (:class:`Registry`), health endpoints on loopback
(:class:`HealthEndpoints`), polling (:func:`eventually`) and the fast liveness settings
of the console's servers (:data:`LIVE_ENV`).

Chromium resolves no host name but 127.0.0.1 (``--host-resolver-rules``): a
page that reached for the internet would find nothing there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.support import CHROMEDRIVER, CHROMIUM, Server, base_settings, headless_chromium

T = TypeVar("T")

# Fast liveness so that stale and critical show within a second or two.
LIVE_ENV = {
    "TOOLREG_REAP_INTERVAL_SECONDS": "0.5",
    "TOOLREG_CHECK_INTERVAL_SECONDS": "0.3",
    "TOOLREG_CHECK_TIMEOUT_SECONDS": "1",
    "TOOLREG_CHECK_FAIL_THRESHOLD": "2",
    "TOOLREG_CHECK_PASS_THRESHOLD": "1",
    "TOOLREG_TTL_SECONDS": "30",
}


def chrome_missing() -> str | None:
    """Why the console's tests cannot run here (Chromium or its driver missing), else None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
    return None


def new_driver() -> WebDriver:
    """Chromium that resolves no name but 127.0.0.1, keeps the browser log, and leaves
    alerts open: a payload that ran would show as UnexpectedAlertPresentException."""
    driver: WebDriver = headless_chromium(
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        **{"goog:loggingPrefs": {"browser": "ALL"}, "unhandledPromptBehavior": "ignore"},
    )
    return driver


class Console:
    """The browser on one registry server's console."""

    def __init__(self, driver: WebDriver, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots

    def open(self, path: str, token: str | None = None) -> None:
        driver = self.driver
        if token is not None:
            driver.get(self.base_url + "/ui/static/favicon.svg")  # the origin, no page script
            driver.execute_script("sessionStorage.setItem('toolreg.token', arguments[0])", token)
        driver.get(self.base_url + path)

    def wait(self, condition: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
        """``condition()``'s first truthy value, polled every 50 ms. An element that the page
        replaced between finding and reading it (stale) or that is not there yet counts as
        not yet: the condition is asked again."""
        try:
            return WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.05,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            ).until(lambda _: condition())
        except TimeoutException:
            seen = {"rows": self.rows(), "errors": self.text("#errors"), "logs": self.severe_logs()}
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; the page shows {seen}"
            ) from None

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, css: str) -> str:
        return str(
            self.js(
                "const n = document.querySelector(arguments[0]); return n ? n.textContent : null;",
                css,
            )
        )

    def rows(self) -> dict[str, str]:
        """The tools table: tool_id -> health."""
        return dict(
            self.js(
                "return [...document.querySelectorAll('#tools-body tr')]"
                ".map(r => [r.dataset.toolId, r.dataset.health]);"
            )
        )

    def screenshot(self, name: str, *, full: bool = True) -> Path:
        """A PNG under the test's temporary dir (the whole page when ``full``)."""
        path = self.shots / f"{name}.png"
        driver = self.driver
        if full:
            height = int(self.js("return document.documentElement.scrollHeight"))
            driver.set_window_size(1280, min(max(height, 800), 4000))
        driver.save_screenshot(str(path))
        driver.set_window_size(1280, 800)
        copy_to = os.environ.get("TOOLREG_CONSOLE_SCREENSHOTS")
        if copy_to:
            shutil.copy(path, Path(copy_to) / path.name)
        return path

    def severe_logs(self) -> list[str]:
        return [
            str(e["message"])
            for e in self.driver.get_log("browser")  # type: ignore[no-untyped-call]
            if e["level"] == "SEVERE"
        ]


class Registry:
    """Seeds the server's registry: over its HTTP API, or straight through the repository."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.admin = asyncio.run(server.token("admin"))
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    def put(self, tool_id: str, node_type: str = "compute", **fields: Any) -> dict[str, Any]:
        body = {"tool_id": tool_id, "node_type": node_type, **fields}
        response = self.http.put(f"/v1/tools/{tool_id}", json=body)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def delete(self, tool_id: str) -> None:
        response = self.http.delete(f"/v1/tools/{tool_id}")
        assert response.status_code == 204, response.text

    def _repository(self, work: Callable[[ToolRegistrationRepository], Any]) -> Any:
        async def go() -> Any:
            settings = base_settings(pool_max_size=2)
            async with PostgresClient(settings, dsn=self.server.dsn) as client:
                return await work(ToolRegistrationRepository(client))

        return asyncio.run(go())

    def create_many(self, registrations: list[dict[str, Any]]) -> None:
        """One transaction for the lot."""
        models = [ModelToolRegistrationCreate(**r) for r in registrations]
        self._repository(lambda repo: repo.create_registrations(models))

    def heartbeat_at(self, tool_id: str, seconds_ago: float) -> None:
        """Move the tool's last heartbeat to ``seconds_ago`` (database clock, near enough)."""
        at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
        assert self._repository(lambda repo: repo.update_heartbeat(tool_id, at))


class _HealthHandler(BaseHTTPRequestHandler):
    server: HealthEndpoints

    def do_GET(self) -> None:
        status = self.server.statuses.get(self.path, 200)
        body = b"ok" if status < 400 else b"failing"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HealthEndpoints(ThreadingHTTPServer):
    """Health endpoints on loopback: every path answers 200 unless ``statuses`` says otherwise."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.statuses: dict[str, int] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started
