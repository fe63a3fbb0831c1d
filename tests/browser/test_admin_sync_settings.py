"""Sync Settings in the emulated web client: switch, frequency, a moving initial-sync bar."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.models import Connection, SyncRun
from bridge.runtime import Runtime

pytestmark = pytest.mark.browser


def test_global_switch_starts_initial_sync_with_a_moving_bar_and_frequency_is_saved(
    dev_host, connected, admin_oid, signed_in_page, web_resource_frame, screenshot
):
    page = signed_in_page(admin_oid, dev_host.page_url("ac_/html/sync_settings.html"))
    frame = web_resource_frame(page)
    switch = frame.get_by_role("switch", name="Global sync")
    switch.wait_for()
    assert switch.is_checked()
    frame.locator("#initial-status").filter(has_text="Not run yet").wait_for()

    switch.uncheck()
    frame.locator("#page-message").filter(has_text="Global sync is off").wait_for()
    switch.check()
    frame.locator("#page-message").filter(has_text="Global sync is on").wait_for()
    # The initial sync was queued (no worker runs in this test) and the page polls it.
    frame.locator("#initial-status").filter(has_text="Queued").wait_for()

    # Drive the run the way the sync engine's worker reports progress.
    runtime = Runtime(dev_host.settings)
    with runtime.db.session() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.kind == "initial")).one()
        run.status, run.records_total, run.records_done = "running", 400, 100
        session.get(Connection, connected).initial_sync_status = "running"
    bar = frame.locator("#initial-progress")
    frame.locator("#initial-counts").filter(has_text="100 of 400").wait_for()
    first = float(bar.get_attribute("aria-valuenow"))
    with runtime.db.session() as session:
        session.scalars(select(SyncRun)).one().records_done = 300
    frame.locator("#initial-counts").filter(has_text="300 of 400").wait_for()
    assert float(bar.get_attribute("aria-valuenow")) > first
    assert frame.locator("#initial-rate").inner_text().endswith("records/s")
    screenshot(page, "sync-settings")

    frame.get_by_label("Run the scheduled sync").select_option("12")
    frame.get_by_role("button", name="Save frequency").click()
    frame.locator("#page-message").filter(has_text="Job frequency saved").wait_for()
    with runtime.db.session() as session:
        assert session.get(Connection, connected).sync_frequency_hours == 12
    page.reload()
    frame = web_resource_frame(page)
    frame.locator("#global-sync-state").filter(has_text="On").wait_for()
    assert frame.get_by_label("Run the scheduled sync").input_value() == "12"
    runtime.db.engine.dispose()
