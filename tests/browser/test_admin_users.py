"""User Management in the emulated web client: typeahead, Add, Remove; admins only."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from bridge.auth import ROLE_AC_USER

pytestmark = pytest.mark.browser

PAGE = "ac_/html/user_management.html"


def _confirm(page, label: str) -> None:
    page.get_by_role("alertdialog").get_by_role("button", name=label).click()


def test_add_and_remove_a_user_with_the_typeahead(
    dev_host, connected, admin_oid, sales_oid, signed_in_page, web_resource_frame, screenshot
):
    dev_host.add_user("Bob O'Neil", ["Salesperson"])
    dev_host.add_user("Bobby Tables", ["Salesperson"])
    page = signed_in_page(admin_oid, dev_host.page_url(PAGE))
    frame = web_resource_frame(page)
    rows = frame.locator("#user-rows tr")
    rows.filter(has_text="Jane Doe").wait_for()
    expect(rows).to_have_count(1)

    search = frame.get_by_role("combobox", name="Search users by name")
    search.press_sequentially("bob", delay=40)
    suggestions = frame.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(suggestions).to_have_count(2)
    expect(suggestions.filter(has_text="Bobby Tables")).to_have_count(1)
    search.fill("")
    search.press_sequentially("O'N", delay=40)  # the quote is escaped in the OData filter
    expect(suggestions).to_have_count(1)
    expect(suggestions).to_contain_text("Bob O'Neil")
    screenshot(page, "user-management-typeahead")
    suggestions.filter(has_text="Bob O'Neil").click()
    assert search.input_value() == "Bob O'Neil"
    frame.get_by_role("button", name="Add", exact=True).click()
    frame.locator("#page-message").filter(has_text="now holds").wait_for()
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Bob O'Neil")).to_have_count(1)
    assert ROLE_AC_USER in _roles(dev_host, "Bob O'Neil")

    # Remove Jane: confirm in the Dynamics dialog; the list and Dynamics agree.
    frame.get_by_role("button", name="Remove Jane Doe").click()
    _confirm(page, "Remove")
    frame.locator("#page-message").filter(has_text="no longer holds").wait_for()
    expect(rows).to_have_count(1)
    assert ROLE_AC_USER not in _roles(dev_host, "Jane Doe")
    screenshot(page, "user-management")

    page.reload()
    frame = web_resource_frame(page)
    frame.locator("#user-rows tr").filter(has_text="Bob O'Neil").wait_for()
    expect(frame.locator("#user-rows tr")).to_have_count(1)
    assert not [e for e in page.console_errors if "Failed to load resource" not in e]


def test_a_salesperson_gets_the_not_allowed_page(
    dev_host, connected, sales_oid, signed_in_page, web_resource_frame, screenshot
):
    page = signed_in_page(sales_oid, dev_host.page_url(PAGE))
    frame = web_resource_frame(page)
    frame.get_by_role("heading", name="Not allowed").wait_for()
    assert frame.locator("#page-content").is_hidden()
    screenshot(page, "user-management-not-allowed")


def _roles(dev_host, name: str) -> list[str]:
    org = dev_host.dataverse.org
    user = next(u for u in org.store.find("systemuser", fullname=name))
    ids = org.store.associated("systemuserroles_association", user["systemuserid"], from_left=True)
    return [org.store.get("role", rid)["name"] for rid in ids]
