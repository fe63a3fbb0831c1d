"""The marketing-activity timeline web resource on a lead form, in the emulated web client.

The record form hosts ``ac_/html/timeline.html`` with ``?id={GUID}&typename=lead`` as Dynamics
does; the page asks the bridge, which reads the ActiveCampaign emulator over HTTP. Screenshots
go to /tmp/sales-screens/.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.test_sales_actions import snap
from tests.integration.test_timeline import EXPECTED_NEWEST_FIRST, seed_every_kind

pytestmark = pytest.mark.browser


def timeline_of(page):
    return page.frame_locator("iframe#WebResource_timeline")


def test_timeline_shows_every_kind_in_order_and_loads_more(
    dev_host, connected, sales_oid, signed_in_page
):
    emu = dev_host.activecampaign
    contact_id = emu.seed_contact("ada@example.com", firstName="Ada")
    # 14 older opens first, then one activity of every kind: 25 in all, 20 a page.
    campaign = emu.seed_campaign("Autumn news")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    for n in range(14):
        emu.seed_activity(
            contact_id, "Log", "open", {"campaign": campaign, "name": "Autumn news"},
            when=old - dt.timedelta(hours=n),
        )
    seed_every_kind(emu, contact_id)
    lead = dev_host.dataverse.create_record(
        "lead", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )

    page = signed_in_page(sales_oid, dev_host.record_url("lead", lead))
    timeline = timeline_of(page)
    items = timeline.locator("#timeline li")
    items.first.wait_for()
    assert items.count() == 20
    texts = timeline.locator("#timeline .ac-item-text").all_inner_texts()
    assert texts[:11] == [text for _, text in EXPECTED_NEWEST_FIRST]
    kinds = [items.nth(i).get_attribute("data-kind") for i in range(11)]
    assert kinds == [kind for kind, _ in EXPECTED_NEWEST_FIRST]

    first_time = timeline.locator("#timeline time").first
    assert first_time.inner_text() == "1 minute ago"
    assert first_time.get_attribute("datetime").endswith("Z")
    assert first_time.get_attribute("datetime") in first_time.get_attribute("title")
    click = timeline.locator("li[data-kind='email_clicked']")
    assert click.locator("a.ac-item-link").get_attribute("href") == "https://example.com/spring"
    assert "/report/#/campaign/" in click.locator("a.ac-item-ac").get_attribute("href")
    link = timeline.locator("#contact-link")
    assert link.get_attribute("href").endswith(f"/app/contacts/{contact_id}")
    assert timeline.locator("li svg").count() == 20  # every item has its icon
    snap(page, "timeline")

    more = timeline.get_by_role("button", name="Load more")
    more.click()
    timeline.locator("#timeline li").nth(24).wait_for()
    assert items.count() == 25
    assert more.is_hidden()
    assert timeline.locator("#timeline .ac-item-text").last.inner_text() == "Opened 'Autumn news'"
    assert timeline.locator("#timeline time").last.inner_text() in ("3 days ago", "4 days ago")
    snap(page, "timeline_loaded_more")


def test_unsynced_record_and_unreachable_activecampaign(
    dev_host, connected, sales_oid, signed_in_page
):
    no_email = dev_host.dataverse.create_record("lead", {"firstname": "No", "lastname": "Email"})
    page = signed_in_page(sales_oid, dev_host.record_url("lead", no_email))
    timeline = timeline_of(page)
    timeline.locator("#state-title").filter(has_text="Not in ActiveCampaign yet").wait_for()
    assert "no email address" in timeline.locator("#state-reason").inner_text()
    assert timeline.get_by_role("button", name="Retry").is_hidden()
    snap(page, "timeline_not_synced")

    emu = dev_host.activecampaign
    contact_id = emu.seed_contact("grace@example.com", firstName="Grace")
    emu.seed_activity(contact_id, "SubscriberTag", "add", {"tag": "Navy"})
    lead = dev_host.dataverse.create_record(
        "lead", {"firstname": "Grace", "lastname": "Hopper", "emailaddress1": "grace@example.com"}
    )
    emu.fail_next(2, status=503, path_contains="/contacts")  # the lookup by email fails
    page = signed_in_page(sales_oid, dev_host.record_url("lead", lead))
    timeline = timeline_of(page)
    timeline.locator("#state-title").filter(has_text="ActiveCampaign is unreachable").wait_for()
    snap(page, "timeline_unreachable")
    timeline.get_by_role("button", name="Retry").click()
    timeline.locator("#timeline .ac-item-text").filter(has_text="Tag 'Navy' added").wait_for()
    assert timeline.locator("#timeline-state").is_hidden()
