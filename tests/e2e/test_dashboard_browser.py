"""A visitor in headless Chromium signs up and manages their API key through the dashboard dialog,
against the real daphne; every key the page shows is tried on GET /v1/models over HTTP."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from inference.catalog import catalog_seed
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

KEY = re.compile(r"sk-sogni-[A-Za-z0-9]{12}-[A-Za-z0-9]{40}")
MASKED = re.compile(r"sk-sogni-[A-Za-z0-9]{4}•{8}")


def _models_status(base_url: str, key: str) -> int:
    return httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=15).status_code


def _sign_up(page, url: str, email: str) -> None:
    page.goto(f"{url}/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(re.escape(f"{url}/dashboard/")))


def test_sign_up_then_reveal_copy_regenerate_disable_and_enable_the_key(live_platform, transactional_db, page):
    catalog_seed()
    url = live_platform.url
    _sign_up(page, url, "ada@example.com")

    # The section tabs work from the keyboard (arrow keys) and show one section at a time.
    account_tab = page.get_by_role("tab", name="Account & Wallet")
    expect(account_tab).to_have_attribute("aria-selected", "true")
    account_tab.focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Developer")).to_be_focused()
    expect(page.get_by_role("tabpanel", name="Account & Wallet")).to_be_hidden()
    expect(page.get_by_text(f"{url}/v1", exact=True)).to_be_visible()
    opener = page.get_by_role("button", name="API Key", exact=True)
    opener.focus()
    page.keyboard.press("Enter")

    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    key_text = dialog.locator("[data-key-text]")
    status = dialog.get_by_role("status")
    expect(key_text).to_have_text(MASKED)

    # Reveal with the keyboard: focus starts on the eye button.
    reveal = dialog.get_by_role("button", name="Reveal key")
    expect(reveal).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_have_text("Key revealed. Keep it secret.")
    expect(key_text).to_have_text(KEY)
    hide = dialog.get_by_role("button", name="Hide key")
    expect(hide).to_have_attribute("aria-pressed", "true")
    expect(hide.locator("[data-icon=eye]")).to_be_hidden()
    expect(hide.locator("[data-icon=eye-off]")).to_be_visible()
    first_key = key_text.inner_text()
    assert _models_status(url, first_key) == 200

    page.evaluate("navigator.clipboard.writeText('something else')")
    dialog.get_by_role("button", name="Copy key").click()
    expect(status).to_have_text("Key copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == first_key

    # Declining the confirmation changes nothing.
    page.once("dialog", lambda confirm: confirm.dismiss())
    dialog.get_by_role("button", name="Regenerate").click()
    expect(status).to_have_text("Nothing changed: regeneration cancelled.")
    assert _models_status(url, first_key) == 200

    page.once("dialog", lambda confirm: confirm.accept())
    dialog.get_by_role("button", name="Regenerate").click()
    expect(status).to_contain_text("New key generated. The old key no longer works.")
    expect(key_text).not_to_have_text(first_key)
    expect(key_text).to_have_text(KEY)
    new_key = key_text.inner_text()
    assert _models_status(url, first_key) == 401
    assert _models_status(url, new_key) == 200

    dialog.get_by_role("button", name="Disable key").click()
    expect(status).to_have_text("Key disabled. API calls with it are refused until you enable it.")
    expect(dialog.locator("[data-key-state]")).to_have_text("Disabled")
    assert _models_status(url, new_key) == 401

    toggle = dialog.get_by_role("button", name="Enable key")
    expect(toggle).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_have_text("Key enabled. API calls with it are accepted again.")
    expect(dialog.locator("[data-key-state]")).to_have_text("Enabled")
    assert _models_status(url, new_key) == 200

    # The copy button reveals first when the key is not shown, and puts the current key on the clipboard.
    dialog.get_by_role("button", name="Hide key").click()
    expect(status).to_have_text("Key hidden.")
    expect(key_text).to_have_text(MASKED)
    page.evaluate("navigator.clipboard.writeText('something else')")
    dialog.get_by_role("button", name="Copy key").click()
    expect(status).to_have_text("Key copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == new_key
    expect(key_text).to_have_text(MASKED)

    # Escape closes the dialog and gives focus back to the button that opened it; it reopens masked.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()
    opener.click()
    expect(key_text).to_have_text(MASKED)
    expect(status).to_have_text("")


def test_signup_errors_show_in_the_page_and_logout_is_in_the_nav(live_platform, transactional_db, page):
    url = live_platform.url
    _sign_up(page, url, "ada@example.com")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(re.escape(f"{url}/login/")))

    page.goto(f"{url}/signup/")
    page.get_by_label("Email").fill("ADA@example.com")
    page.get_by_label("Password", exact=True).fill("password")
    page.get_by_label("Confirm password").fill("password")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text("An account with this email already exists.")).to_be_visible()
    expect(page.get_by_text("This password is too common.")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")

    page.goto(f"{url}/dashboard/")
    expect(page).to_have_url(re.compile(re.escape(f"{url}/login/?next=")))
