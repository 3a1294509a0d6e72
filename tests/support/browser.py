"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright's sync API.

Fixtures (registered in tests/conftest.py):
- `browser`: one Chromium per test module.
- `browser_context`: a fresh context per test (own cookies), clipboard read/write granted.
- `page`: a page in that context; an uncaught JavaScript error in it fails the test.

Use them with `live_platform` and `transactional_db` (the browser talks to the real daphne).
"""

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CONTEXT_PERMISSIONS = ["clipboard-read", "clipboard-write"]
DEFAULT_TIMEOUT_MS = 20_000
_ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running on this thread, which makes Django refuse the
    # test's own ORM calls. Allow them in this process only; start_process() never passes it to children.
    previous = os.environ.get(_ASYNC_UNSAFE)
    os.environ[_ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop(_ASYNC_UNSAFE, None)
        else:
            os.environ[_ASYNC_UNSAFE] = previous


@pytest.fixture
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(permissions=CONTEXT_PERMISSIONS)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert not errors, f"uncaught JavaScript errors: {errors}"
