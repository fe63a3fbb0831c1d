"""Sync Health and the Dashboard in the emulated web client: a record that really fails
(ActiveCampaign refuses its email address) is retried from the page once fixed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bridge.models import RecordLink
from bridge.runtime import Runtime
from tests.browser.conftest import CLIENT_ID, wait_until

pytestmark = pytest.mark.browser


def _link_status(runtime, lead_id):
    with runtime.db.session() as session:
        link = session.scalars(select(RecordLink).where(RecordLink.dynamics_id == lead_id)).first()
        return (link.status, link.last_error) if link else (None, None)


def test_a_failing_record_is_retried_from_sync_health(
    dev_host, connected, admin_oid, start_workers, signed_in_page, web_resource_frame, screenshot
):
    start_workers(queues=("realtime",))
    runtime = Runtime(dev_host.settings)
    dataverse = dev_host.dataverse
    # ActiveCampaign refuses this address: the push fails for real.
    lead_id = dataverse.create_record("lead", {"lastname": "Kim", "emailaddress1": "kim@example"})
    wait_until(lambda: _link_status(runtime, lead_id)[0] == "failing", timeout=30)
    assert "Email address is not valid" in _link_status(runtime, lead_id)[1]

    page = signed_in_page(admin_oid, dev_host.page_url("ac_/html/sync_health.html"))
    frame = web_resource_frame(page)
    row = frame.locator(f"#failing-rows tr[data-record='{lead_id}']")
    row.wait_for()
    assert "Email address is not valid" in row.inner_text()
    assert frame.locator("#count-failing strong").inner_text() == "1"
    screenshot(page, "sync-health")

    # Someone fixes the address as the bridge's own app user: no webhook push follows.
    dataverse.update_record(
        "lead", lead_id, {"emailaddress1": "kim@example.com"},
        user_id=dataverse.app_user_id(CLIENT_ID),
    )
    time.sleep(1)
    assert _link_status(runtime, lead_id)[0] == "failing"

    row.get_by_role("button", name="Retry").click()
    frame.locator("#page-message").filter(has_text="Retry queued").wait_for()
    wait_until(lambda: _link_status(runtime, lead_id)[0] == "synced", timeout=30)
    frame.get_by_role("button", name="Refresh").click()
    frame.locator("#no-failing").wait_for()
    assert frame.locator("#count-synced strong").inner_text() == "1"
    assert dev_host.activecampaign.store.contact_by_email("kim@example.com") is not None
    screenshot(page, "sync-health-retried")

    # The dashboard shows the same figures and links to every page.
    page.goto(dev_host.page_url("ac_/html/dashboard.html"))
    frame = web_resource_frame(page)
    frame.locator("#dash-connection").filter(has_text="Connected to").wait_for()
    assert frame.locator("#count-synced strong").inner_text() == "1"
    assert frame.locator("#dash-global").inner_text() == "On"
    for name in ("Settings", "User Management", "Data Configuration", "Sync Settings",
                 "Sync Health"):
        links = frame.get_by_role("navigation").get_by_role("link", name=name, exact=True)
        assert links.count() == 1
    screenshot(page, "dashboard")
    frame.get_by_role("link", name="Sync Health").click()
    frame.get_by_role("heading", name="Recent sync runs").wait_for()
    runtime.db.engine.dispose()
    assert not [e for e in page.console_errors if "Failed to load resource" not in e]


def test_non_admins_get_the_not_allowed_page(
    dev_host, connected, sales_oid, signed_in_page, web_resource_frame
):
    for name in ("sync_health", "dashboard", "data_configuration"):
        page = signed_in_page(sales_oid, dev_host.page_url(f"ac_/html/{name}.html"))
        frame = web_resource_frame(page)
        frame.get_by_role("heading", name="Not allowed").wait_for()
        assert frame.locator("#page-content").is_hidden()
