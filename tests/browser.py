"""Headless Chromium for tests: Debian's `chromium` package driven by Playwright for Python.

Playwright's own browser downloads are never used (`make test` installs `chromium` from apt;
`playwright install` is never run). `chromium_browser(artifacts)` yields a `Browser` whose
pages record every console message and uncaught exception, and write screenshots into
`artifacts`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Chromium logs a failed HTTP response as a console error from the network, not from
# JavaScript; tests that provoke one on purpose count those apart.
NETWORK_FAILURE = "Failed to load resource: the server responded with a status of "
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Browser:
    """A launched Chromium, the messages of its pages, and where screenshots go."""

    browser: object
    artifacts: Path
    js_errors: list[str] = field(default_factory=list)
    network_failures: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    def new_page(self, width: int = 1280, height: int = 900) -> object:
        """A page in a fresh context (its own sessionStorage) whose errors are recorded."""
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        page = context.new_page()
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.js_errors.append(f"uncaught: {exc}"))
        return page

    def _on_console(self, message: object) -> None:
        if message.type != "error":
            return
        if message.text.startswith(NETWORK_FAILURE):
            self.network_failures.append(message.text)
        else:
            self.js_errors.append(f"console: {message.text} at {message.location}")

    def screenshot(self, page: object, name: str) -> Path:
        """A full-page PNG of `page` as `<artifacts>/<name>.png`."""
        path = self.artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.screenshots.append(path)
        return path


def artifacts_dir(name: str) -> Path:
    """`test-artifacts/<name>/` under the repository (ignored by git), emptied."""
    path = REPO_ROOT / "test-artifacts" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def chromium_browser(artifacts: Path) -> Iterator[Browser]:
    """Headless Chromium from /usr/bin/chromium for the block."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: install the test extra (make test does)")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield Browser(browser, artifacts)
        finally:
            browser.close()
