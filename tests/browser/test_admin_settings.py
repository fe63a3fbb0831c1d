"""Settings / Connect in the emulated web client, clicked through as an admin."""

from __future__ import annotations

import pytest

from tests.browser.conftest import AC_KEY

pytestmark = pytest.mark.browser

SETTINGS = "ac_/html/settings.html"


def _confirm(page, label: str) -> None:
    page.get_by_role("alertdialog").get_by_role("button", name=label).click()


def test_connect_errors_then_success_then_disconnect(
    dev_host, admin_oid, signed_in_page, web_resource_frame, screenshot
):
    page = signed_in_page(admin_oid, dev_host.page_url(SETTINGS))
    frame = web_resource_frame(page)
    url, key = frame.get_by_label("API URL"), frame.get_by_label("API key")

    # A URL that is not an ActiveCampaign API host: the message sits beside the URL field.
    url.fill("https://example.com")
    key.fill(AC_KEY)
    frame.get_by_role("button", name="Connect").click()
    _confirm(page, "Connect")
    url_error = frame.locator("#api-url-error")
    url_error.filter(has_text="not an ActiveCampaign API URL").wait_for()
    assert url.get_attribute("aria-invalid") == "true"

    # The right host with a wrong key: the message sits beside the key field.
    url.fill(dev_host.activecampaign.url)
    key.fill("not-the-key")
    frame.get_by_role("button", name="Connect").click()
    _confirm(page, "Connect")
    frame.locator("#api-key-error").filter(has_text="rejected this API key").wait_for()
    assert url_error.is_hidden()
    screenshot(page, "settings-wrong-key")

    # Cancelling the confirmation does nothing.
    key.fill(AC_KEY)
    frame.get_by_role("button", name="Connect").click()
    _confirm(page, "Cancel")
    assert frame.locator("#connected-panel").is_hidden()

    frame.get_by_role("button", name="Connect").click()
    _confirm(page, "Connect")
    panel = frame.locator("#connected-panel")
    panel.wait_for()
    assert frame.locator("#account-url").inner_text() == dev_host.activecampaign.url
    assert frame.locator("#key-last4").inner_text().endswith(AC_KEY[-4:])
    assert frame.locator("#connected-by").inner_text() == "Sam Admin"
    assert AC_KEY not in frame.locator("body").inner_text()
    screenshot(page, "settings-connected")

    # Reloading shows the connection; Disconnect removes it.
    page.reload()
    frame = web_resource_frame(page)
    frame.locator("#connected-panel").wait_for()
    frame.get_by_role("button", name="Disconnect").click()
    _confirm(page, "Disconnect")
    frame.get_by_label("API URL").wait_for()
    # Only the refused requests above are logged; no script error.
    assert all("Failed to load resource" in e for e in page.console_errors), page.console_errors


def test_non_admin_gets_the_not_allowed_page(dev_host, sales_oid, signed_in_page, screenshot):
    page = signed_in_page(sales_oid, dev_host.page_url(SETTINGS))
    frame = page.frame_locator("iframe#WebResource")
    frame.get_by_role("heading", name="Not allowed").wait_for()
    assert frame.locator("#page-content").is_hidden()
    screenshot(page, "not-allowed")
