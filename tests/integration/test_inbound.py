"""ActiveCampaign → Dynamics over HTTP: account webhooks and the automation Webhook action.

Both emulators, the bridge on a real socket, real ``rq worker`` processes. The
ActiveCampaign emulator posts form-encoded bodies exactly as ActiveCampaign does.
"""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from bridge.config import load_settings
from bridge.models import EntityConfig, LinkStatus, RecordLink
from bridge.runtime import Runtime
from tests.integration.conftest import wait_until
from workers.inbound import register_activecampaign_webhook

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime(bridge_env, bridge_server):
    rt = Runtime(load_settings(bridge_env))  # after bridge_server: the public URL is known
    yield rt
    rt.db.engine.dispose()
    rt.redis.close()


@pytest.fixture
def hook_url(runtime, connected) -> str:
    return register_activecampaign_webhook(runtime, connected)


def link_of(runtime, entity: str, record_id: str) -> RecordLink | None:
    with runtime.db.session() as session:
        return session.scalar(
            select(RecordLink).where(RecordLink.entity == entity,
                                     RecordLink.dynamics_id == record_id)
        )


def synced_lead(
    sales_user, activecampaign, runtime, dataverse, email="ada@example.com", **values
) -> tuple:
    body = {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": email, **values}
    lead_id = sales_user.create("leads", body)
    contact = wait_until(
        lambda: (c := activecampaign.find_contact(email)) and len(c["tags"]) == 2 and c
    )
    wait_until(lambda: (link := link_of(runtime, "lead", lead_id)) and link.synced_values)
    # ...and the write-back of the contact id, the last step of the push.
    wait_until(lambda: dataverse.get_record("lead", lead_id).get("ac_activecampaigncontactid"))
    return lead_id, contact["id"]


def dataverse_writes(dataverse, since: int) -> list[dict]:
    return [e for e in dataverse.request_log[since:] if e["method"] in ("PATCH", "POST")
            and "/api/data/" in e["path"] and "WhoAmI" not in e["path"]]


def ac_writes(activecampaign) -> list[dict]:
    return [e for e in activecampaign.request_log if e["method"] in ("POST", "PUT", "DELETE")]


# --- the view ---------------------------------------------------------------------------


def test_unknown_token_bad_bodies_and_other_events_are_answered_in_json(
    hook_url, bridge_server, activecampaign
):
    base = hook_url.rsplit("/", 1)[0]
    bad = requests.post(f"{base}/not-the-token", data={"type": "update", "contact[id]": "1"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_webhook_token"
    assert requests.post(f"{base}/not-the-token/create-lead",
                         data={"contact[id]": "1"}).status_code == 401

    missing = requests.post(hook_url, data={"type": "update", "contact[email]": "x@y.z"})
    assert missing.status_code == 400
    assert "contact[id]" in missing.json()["error"]["fields"]
    assert requests.post(hook_url, data={"type": "update", "contact[id]": "abc"}
                         ).status_code == 400
    assert requests.post(hook_url, data={"contact[id]": "1"}).status_code == 400  # no type
    assert requests.post(hook_url, json={"type": "update", "contact[id]": "1"}
                         ).status_code == 415

    other = requests.post(hook_url, data={"type": "sent", "contact[id]": "1"})
    assert other.status_code == 202
    assert other.json()["status"] == "ignored"


def test_redis_down_is_a_503(bridge_env, connected, runtime, hook_url):
    from bridge.app import create_app
    from emulators.server import serve_in_thread

    settings = load_settings({**bridge_env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    server = serve_in_thread(create_app(settings), quiet=True)
    try:
        token = hook_url.rsplit("/", 1)[1]
        response = requests.post(f"{server.url}/webhooks/activecampaign/{token}",
                                 data={"type": "update", "contact[id]": "1"}, timeout=10)
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert response.headers["Retry-After"]


# --- pulls -------------------------------------------------------------------------------


def test_an_edit_in_activecampaign_reaches_the_lead_once_and_does_not_come_back(
    runtime, hook_url, sales_user, activecampaign, dataverse, start_workers
):
    start_workers(2)
    lead_id, contact_id = synced_lead(sales_user, activecampaign, runtime, dataverse)
    deliveries_before = len(dataverse.webhook_deliveries)
    activecampaign.reset_log()
    log_start = len(dataverse.request_log)

    activecampaign.seed_contact("ada@example.com", firstName="Augusta", phone="+1 555")
    [delivery] = activecampaign.fire_webhook_event("update", contact_id)
    assert delivery["status"] == 202

    wait_until(lambda: dataverse.get_record("lead", lead_id)["firstname"] == "Augusta")
    assert dataverse.get_record("lead", lead_id)["telephone1"] == "+1 555"
    # The pull's own write fires the Dynamics webhook; the bridge drops it (tag), so no
    # ActiveCampaign write follows: the loop is closed.
    wait_until(lambda: len(dataverse.webhook_deliveries) > deliveries_before)
    assert dataverse.webhook_deliveries[-1]["status"] == 202
    time.sleep(1.5)
    assert ac_writes(activecampaign) == []
    writes = dataverse_writes(dataverse, log_start)
    assert len(writes) == 1, writes
    link = link_of(runtime, "lead", lead_id)
    assert link.pulled_hash and link.synced_values["firstname"] == "Augusta"

    # The same delivery again (AC guarantees "at least once"): the ledger's pulled hash
    # says nothing changed, so Dynamics is not written (nor even read) again.
    activecampaign.fire_webhook_event("update", contact_id)
    time.sleep(1.5)
    assert len(dataverse_writes(dataverse, log_start)) == 1
    assert ac_writes(activecampaign) == []


def test_only_fields_whose_direction_allows_it_are_pulled_and_unsubscribe_opts_out(
    runtime, connected, hook_url, sales_user, activecampaign, dataverse, start_workers
):
    with runtime.db.session() as session:
        session.add(EntityConfig(
            connection_id=connected, entity="lead", enabled=True, mode="all", criteria=[],
            field_mappings=[
                {"ac_field": "email", "dynamics_column": "emailaddress1"},
                {"ac_field": "firstName", "dynamics_column": "firstname",
                 "direction": "to_activecampaign"},
                {"ac_field": "lastName", "dynamics_column": "lastname", "direction": "both"},
            ],
        ))
    start_workers(1)
    lead_id, contact_id = synced_lead(sales_user, activecampaign, runtime, dataverse)
    activecampaign.seed_contact("ada@example.com", firstName="Nope", lastName="Byron")
    activecampaign.fire_webhook_event("update", contact_id)
    wait_until(lambda: dataverse.get_record("lead", lead_id)["lastname"] == "Byron")
    assert dataverse.get_record("lead", lead_id)["firstname"] == "Ada"

    assert dataverse.get_record("lead", lead_id)["donotbulkemail"] is False
    activecampaign.fire_webhook_event("unsubscribe", contact_id)
    wait_until(lambda: dataverse.get_record("lead", lead_id)["donotbulkemail"] is True)


# --- the automation Webhook action -----------------------------------------------------------


def test_create_lead_action_creates_it_now_once_and_tags_the_contact(
    runtime, hook_url, activecampaign, dataverse, start_workers
):
    start_workers(1)
    contact_id = activecampaign.seed_contact(
        "grace@example.com", firstName="Grace", lastName="Hopper", phone="+1 202")
    url = hook_url + "/create-lead"
    assert activecampaign.fire_automation_webhook(url, contact_id, 7)["status"] == 202
    assert activecampaign.fire_automation_webhook(url, contact_id, 7)["status"] == 202

    def leads():
        return [r for r in dataverse.store.find("lead") if r.get("emailaddress1")
                == "grace@example.com"]

    wait_until(lambda: set(activecampaign.find_contact("grace@example.com")["tags"]) == {
        "D365: Lead", "D365: Pulled from ActiveCampaign"})
    time.sleep(1.0)
    [lead] = leads()
    assert (lead["firstname"], lead["lastname"], lead["telephone1"]) == ("Grace", "Hopper",
                                                                          "+1 202")
    assert lead["ac_activecampaigncontactid"] == contact_id
    link = link_of(runtime, "lead", str(lead["leadid"]).lower())
    assert (link.ac_contact_id, link.status) == (contact_id, LinkStatus.SYNCED)


def test_create_contact_action_links_an_existing_contact_with_that_email(
    runtime, hook_url, activecampaign, dataverse, sales_user, start_workers
):
    existing = sales_user.create(
        "contacts", {"firstname": "Alan", "lastname": "Turing", "emailaddress1": "alan@ex.com"})
    # The Dynamics webhook pushes it first; stop that from mattering by waiting for it.
    start_workers(1)
    wait_until(lambda: activecampaign.find_contact("alan@ex.com"))
    contact_id = activecampaign.find_contact("alan@ex.com")["id"]
    activecampaign.fire_automation_webhook(hook_url + "/create-contact", contact_id, 3)
    wait_until(lambda: "D365: Pulled from ActiveCampaign" in
               activecampaign.find_contact("alan@ex.com")["tags"])
    assert len([r for r in dataverse.store.find("contact")
                if r.get("emailaddress1") == "alan@ex.com"]) == 1
    link = wait_until(lambda: (lk := link_of(runtime, "contact", existing))
                      and lk.status == LinkStatus.SYNCED and lk)
    assert link.ac_contact_id == contact_id
