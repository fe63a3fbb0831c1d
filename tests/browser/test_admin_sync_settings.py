"""Sync Settings in the emulated web client: switch, frequency, a moving initial-sync bar."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.echo import echo_tag
from bridge.models import Connection, SyncRun
from bridge.runtime import Runtime

pytestmark = pytest.mark.browser

LEADS = 50
# Progress is committed once per Dataverse page: 10-row pages give five steps (10 … 50).
PAGE_SIZE = 10
# ActiveCampaign confirms each page's import after this long, so every step stays on the
# page for more than one of its one-second polls.
IMPORT_SECONDS = 1.0


@pytest.fixture
def bridge_env(bridge_env):
    """Small Dataverse pages, so the initial sync of a few leads moves the bar in steps."""
    bridge_env["INITIAL_SYNC_PAGE_SIZE"] = str(PAGE_SIZE)
    return bridge_env


def _bar_at_one_of(frame, values):
    """The progress bar once its ``aria-valuenow`` is one of ``values``."""
    return frame.locator(
        ", ".join(f'#initial-progress[aria-valuenow="{value}"]' for value in values)
    )


def test_global_switch_starts_initial_sync_with_a_moving_bar_and_frequency_is_saved(
    dev_host, connected, admin_oid, signed_in_page, web_resource_frame, screenshot,
    start_workers,
):
    dataverse, activecampaign = dev_host.dataverse, dev_host.activecampaign
    # Leads already in Dynamics; tagged like a bridge write so their create webhooks are
    # dropped and only the initial sync brings them to ActiveCampaign.
    for i in range(LEADS):
        dataverse.create_record(
            "lead",
            {"firstname": f"First{i}", "lastname": f"Last{i}",
             "emailaddress1": f"seed{i}@example.com"},
            tag=echo_tag("seed"),
        )
    activecampaign.importer.delay_seconds = IMPORT_SECONDS

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
    # Switching on queued the initial sync; nothing runs it until a worker starts.
    frame.locator("#initial-status").filter(has_text="Queued").wait_for()
    start_workers(1, queues=("bulk",))

    # The worker reports each confirmed page; the page's poll moves the bar.
    bar = frame.locator("#initial-progress")
    frame.locator("#initial-status").filter(has_text="Running").wait_for(timeout=15_000)
    _bar_at_one_of(frame, range(1, LEADS)).wait_for(timeout=15_000)
    first = int(bar.get_attribute("aria-valuenow"))
    assert 0 < first < LEADS
    assert bar.get_attribute("aria-valuemax") == str(LEADS)
    _bar_at_one_of(frame, range(first + 1, LEADS)).wait_for(timeout=15_000)
    second = int(bar.get_attribute("aria-valuenow"))
    assert first < second < LEADS
    assert frame.locator("#initial-rate").inner_text().endswith("records/s")
    screenshot(page, "sync-settings")

    frame.locator("#initial-status").filter(has_text="Finished").wait_for(timeout=15_000)
    assert bar.get_attribute("aria-valuenow") == str(LEADS)
    assert frame.locator("#initial-counts").inner_text() == f"{LEADS} of {LEADS} records"
    assert frame.locator("#initial-eta").inner_text() == "done"
    emails = {contact["email"] for contact in activecampaign.contacts()}
    assert emails == {f"seed{i}@example.com" for i in range(LEADS)}
    # All through bulk import, one ActiveCampaign import per Dataverse page.
    batches = list(activecampaign.importer.batches.values())
    assert [len(batch["contacts"]) for batch in batches] == [PAGE_SIZE] * (LEADS // PAGE_SIZE)
    runtime = Runtime(dev_host.settings)
    with runtime.db.session() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.kind == "initial")).one()
        assert (run.status, run.records_total, run.records_done, run.records_failed) == (
            "done", LEADS, LEADS, 0)
        assert session.get(Connection, connected).initial_sync_status == "done"

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
    runtime.redis.close()
