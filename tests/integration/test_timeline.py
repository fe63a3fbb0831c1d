"""The marketing-activity timeline over HTTP: ledger or email → ActiveCampaign activities → items.

Real bridge server, both emulators, Redis and the database; one ``rq worker`` process where an
action must change the contact (to show the cache is invalidated by the bridge's own writes).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from bridge.models import Connection, EntityConfig, RecordLink
from tests.integration import test_actions
from tests.integration.test_actions import Caller, make_caller
from workers.sync import push_record

# A fixture shared with the action tests (runtime and connection_id come from conftest.py).
jane = test_actions.jane

pytestmark = pytest.mark.slow

def seed_every_kind(emu, contact_id: str) -> dict:
    """One activity of every kind the timeline shows, oldest first (1 minute apart, the newest
    one minute before ``now``, which is returned with the automation and campaign ids)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def ago(minutes: int) -> dt.datetime:
        return now - dt.timedelta(minutes=minutes)

    welcome = emu.seed_automation("Welcome series")
    campaign = emu.seed_campaign("Spring newsletter", message_subject="What's new this spring")
    data = {"campaign": campaign, "message": "1", "name": "Spring newsletter",
            "subject": "What's new this spring"}
    rows = [
        ("SubscriberList", "subscribe", {"list": "1", "name": "Newsletter"}),
        ("SubscriberTag", "add", {"tag": "VIP"}),
        ("SubscriberSeries", "start", {"automation": welcome, "name": "Welcome series"}),
        ("Log", "sent", data),
        ("Log", "open", data),
        ("LinkData", "click", {**data, "url": "https://example.com/spring"}),
        ("TrackingLog", "", {"type": "Page visit", "value": "https://example.com/pricing"}),
        ("TrackingLog", "", {"type": "Webinar signup", "value": "May 2"}),
        ("SubscriberSeries", "complete", {"automation": welcome, "name": "Welcome series"}),
        ("SubscriberTag", "remove", {"tag": "VIP"}),
        ("SubscriberList", "unsubscribe", {"list": "1", "name": "Newsletter"}),
    ]
    for index, (rtype, action, payload) in enumerate(rows):
        emu.seed_activity(contact_id, rtype, action, payload, when=ago(len(rows) - index))
    return {"automation": welcome, "campaign": campaign, "now": now}


EXPECTED_NEWEST_FIRST = [
    ("list_unsubscribed", "Unsubscribed from list 'Newsletter'"),
    ("tag_removed", "Tag 'VIP' removed"),
    ("automation_completed", "Completed automation 'Welcome series'"),
    ("event", "Event 'Webinar signup': May 2"),
    ("site_visit", "Visited https://example.com/pricing"),
    ("email_clicked", "Clicked https://example.com/spring in 'Spring newsletter'"),
    ("email_opened", "Opened 'Spring newsletter'"),
    ("email_sent", "Was sent the campaign 'Spring newsletter' (“What's new this spring”)"),
    ("automation_entered", "Entered automation 'Welcome series'"),
    ("tag_added", "Tag 'VIP' added"),
    ("list_subscribed", "Subscribed to list 'Newsletter'"),
]


def activities_calls(emu) -> int:
    return len([e for e in emu.request_log if e["path"] == "/api/3/activities"])


def test_linked_record_shows_every_kind_newest_first_in_pages(
    jane, sales_user, activecampaign, runtime, connection_id
):
    lead = sales_user.create("leads", {"lastname": "Ada", "emailaddress1": "ada@example.com"})
    contact_id = push_record(runtime, connection_id, "lead", lead).ac_contact_id
    ids = seed_every_kind(activecampaign, contact_id)
    # The sync's own tagging is not a timeline activity in the emulator; only the seeded ones.

    first = jane.get(f"/api/v1/records/lead/{{{lead.upper()}}}/activities", limit=6)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["state"] == "ok" and page["record"] == {"entity": "lead", "id": lead}
    assert page["contact"]["id"] == contact_id
    assert page["contact"]["url"].endswith(f"/app/contacts/{contact_id}")
    assert page["total"] == 11 and page["has_more"] is True and page["next_offset"] == 6
    second = jane.get(f"/api/v1/records/lead/{lead}/activities", limit=6, offset=6).json()
    assert second["has_more"] is False and second["next_offset"] is None
    items = page["items"] + second["items"]
    assert [(i["kind"], i["text"]) for i in items] == EXPECTED_NEWEST_FIRST
    times = [i["occurred_at"] for i in items]
    assert times == sorted(times, reverse=True) and times[0].endswith("Z")
    newest = ids["now"] - dt.timedelta(minutes=1)
    assert times[0] == newest.strftime("%Y-%m-%dT%H:%M:%SZ")

    click = next(i for i in items if i["kind"] == "email_clicked")
    assert click["link_url"] == "https://example.com/spring"
    assert click["ac_url"].endswith(f"/report/#/campaign/{ids['campaign']}/overview")
    assert click["campaign"] == {"id": ids["campaign"], "name": "Spring newsletter"}
    entered = next(i for i in items if i["kind"] == "automation_entered")
    assert entered["ac_url"].endswith(f"/series/{ids['automation']}")
    assert entered["icon"] == "automation"
    assert {i["source"]["reference_type"] for i in items} >= {"Log", "LinkData", "TrackingLog"}

    # Cached per contact: reading the same pages again does not call ActiveCampaign.
    calls = activities_calls(activecampaign)
    jane.get(f"/api/v1/records/lead/{lead}/activities", limit=6)
    assert activities_calls(activecampaign) == calls


def test_the_bridges_own_action_shows_at_once(
    jane, sales_user, activecampaign, runtime, connection_id, start_workers
):
    start_workers(1, queues=("actions",))
    lead = sales_user.create("leads", {"lastname": "Ada", "emailaddress1": "ada@example.com"})
    push_record(runtime, connection_id, "lead", lead)
    welcome = activecampaign.seed_automation("Welcome series")
    empty = jane.get(f"/api/v1/records/lead/{lead}/activities").json()
    assert empty["state"] == "empty" and empty["items"] == []
    assert empty["reason"] == "No marketing activity yet."

    accepted = jane.post(
        "/api/v1/actions/add-to-automation",
        {"entity": "lead", "record_ids": [lead], "automation_id": welcome},
    ).json()
    jane.wait_done(accepted["action_id"])
    after = jane.get(f"/api/v1/records/lead/{lead}/activities").json()
    assert [i["text"] for i in after["items"]] == ["Entered automation 'Welcome series'"]


def test_unlinked_record_is_found_by_email_and_linked(
    jane, sales_user, activecampaign, runtime, connection_id
):
    contact_id = activecampaign.seed_contact("grace@example.com", firstName="Grace")
    activecampaign.seed_activity(contact_id, "SubscriberTag", "add", {"tag": "Navy"})
    contact = sales_user.create(
        "contacts", {"lastname": "Hopper", "emailaddress1": "Grace@Example.com"}
    )
    body = jane.get(f"/api/v1/records/contact/{contact}/activities").json()
    assert body["state"] == "ok" and [i["text"] for i in body["items"]] == ["Tag 'Navy' added"]
    with runtime.db.session() as session:
        link = session.scalar(select(RecordLink).where(RecordLink.dynamics_id == contact))
        assert (link.ac_contact_id, link.email, link.status) == (
            contact_id, "grace@example.com", "pending",
        )


def test_records_not_in_activecampaign_say_why(
    jane, sales_user, activecampaign, runtime, connection_id
):
    def state(entity, record_id):
        body = jane.get(f"/api/v1/records/{entity}/{record_id}/activities").json()
        assert body["items"] == [] and body["contact"] is None
        return body["state"], body["reason_code"], body["reason"]

    no_email = sales_user.create("leads", {"lastname": "Nobody"})
    assert state("lead", no_email)[:2] == ("not_synced", "no_email")

    fresh = sales_user.create("leads", {"lastname": "New", "emailaddress1": "new@example.com"})
    assert state("lead", fresh) == (
        "not_synced", "not_synced_yet", "This record has not been synced to ActiveCampaign yet.",
    )

    with runtime.db.session() as session:
        session.add(EntityConfig(
            connection_id=connection_id, entity="lead", mode="criteria",
            criteria=[{"field": "companyname", "operator": "eq", "value": "Acme"}],
        ))
    outside = sales_user.create(
        "leads", {"lastname": "Out", "emailaddress1": "out@example.com", "companyname": "Other"}
    )
    assert push_record(runtime, connection_id, "lead", outside).outcome == "excluded"
    code, reason = state("lead", outside)[1:]
    assert code == "excluded" and "criteria" in reason

    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    assert state("lead", fresh)[1] == "sync_off"


def test_errors_unreachable_activecampaign_and_roles(
    jane, sales_user, activecampaign, runtime, connection_id, dataverse, bridge_server
):
    lead = sales_user.create("leads", {"lastname": "Ada", "emailaddress1": "ada@example.com"})
    push_record(runtime, connection_id, "lead", lead)

    # The page waits on this call, so the bridge tries twice and then says so (503 + retry).
    activecampaign.fail_next(2, status=503, path_contains="/activities")
    down = jane.get(f"/api/v1/records/lead/{lead}/activities")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "activecampaign_unavailable"
    assert down.headers["Retry-After"]
    retried = jane.get(f"/api/v1/records/lead/{lead}/activities")
    assert retried.status_code == 200 and retried.json()["state"] == "empty"

    def code(response):
        return response.status_code, response.json()["error"]["code"]

    assert code(jane.get(f"/api/v1/records/lead/{uuid.uuid4()}/activities")) == (
        404, "unknown_record",
    )
    assert code(jane.get(f"/api/v1/records/account/{lead}/activities")) == (404, "unknown_table")
    assert code(jane.get("/api/v1/records/lead/not-a-guid/activities")) == (
        422, "invalid_record_id",
    )
    assert jane.get(f"/api/v1/records/lead/{lead}/activities", limit=500).status_code == 422
    admin = make_caller(dataverse, bridge_server, "Sam Admin", ["System Administrator"])
    assert code(admin.get(f"/api/v1/records/lead/{lead}/activities")) == (
        403, "user_role_required",
    )
    anonymous = Caller(bridge_server.url, None, dataverse.url)
    assert code(anonymous.get(f"/api/v1/records/lead/{lead}/activities")) == (401, "missing_token")


def test_timeline_shape_is_in_the_openapi_document(jane):
    import requests

    doc = requests.get(jane.base + "/api/v1/openapi.json", timeout=10).json()
    assert "/api/v1/records/{entity}/{record_id}/activities" in doc["paths"]
    item = doc["components"]["schemas"]["TimelineItem"]
    assert set(item["properties"]) >= {"kind", "icon", "text", "occurred_at", "ac_url", "link_url"}
    assert "/api/v1/actions/{action_id}" in doc["paths"]
