"""The analyst console in a real browser (issue 19).

Debian's Chromium, driven headless by Playwright (the system executable: never a
downloaded browser), works the console of a real ``socd run``: TLS on a loopback
port (a test CA; the browser is told to accept it), users made with ``socd
console``, alerts decoded by the real pipeline from the bundled sample week.
Assertions read page content with Playwright's auto-waiting ``expect``; the
store, the audit log and the block store are then checked directly. Screenshots
of every flow are kept as test artefacts in ``$SOCD_TEST_ARTIFACTS`` (default
``tests/artifacts/console/``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console_harness import PASSWORDS, Console, console_config, start_console

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SOCD_TEST_ARTIFACTS") or REPO / "tests/artifacts") / "console"


def chromium_path() -> str:
    """Debian's Chromium; its absence fails the tests (scripts/services.sh installs it
    from deploy/dev/apt-packages.txt)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: the console's browser tests need Debian's "
                    "chromium (make services installs it from deploy/dev/apt-packages.txt)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workdir = tmp_path_factory.mktemp("console-browser")
    running = start_console(workdir, console_config(workdir))
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any, console: Console, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the console, in Vietnamese."""
    context = browser.new_context(base_url=console.url, ignore_https_errors=True,
                                  locale="vi-VN", viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, user: str) -> None:
    page.goto("/login")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def test_sign_in(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    shot(page, "01-login")
    page.fill("input[name=name]", "analyst")
    page.fill("input[name=password]", "not the password")
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("alert")).to_be_visible()
    shot(page, "01-login-refused")
    sign_in(page, "analyst")
    expect(page.locator("body")).to_contain_text("analyst")
    shot(page, "02-signed-in")
