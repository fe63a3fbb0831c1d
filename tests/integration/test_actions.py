"""Sales actions over HTTP: the bridge, real ``rq worker`` processes, both emulators, Redis, DB.

A sales user's Entra token (minted by the Dataverse emulator) calls ``/api/v1``; the work runs
in worker subprocesses on the ``actions`` queue; the results are read back from the action
endpoint, the ActiveCampaign emulator and the notes on the Dynamics records.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from sqlalchemy import select

from bridge.auth import ORG_HEADER
from bridge.connections import create_connection
from bridge.models import ActionLog, EntityConfig
from tests.integration.conftest import CLIENT_ID, wait_until

pytestmark = pytest.mark.slow


class Caller:
    """A person in Dynamics calling the bridge the way the web resources do."""

    def __init__(self, base: str, token: str | None, org: str) -> None:
        self.base, self.token, self.org = base, token, org

    def headers(self, **extra: str) -> dict:
        headers = {ORG_HEADER: self.org, **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path: str, **params):
        return requests.get(self.base + path, params=params, headers=self.headers(), timeout=30)

    def post(self, path: str, body: dict, **headers: str):
        return requests.post(
            self.base + path, json=body, headers=self.headers(**headers), timeout=30
        )

    def wait_done(self, action_id: int, timeout: float = 30) -> dict:
        def finished():
            body = self.get(f"/api/v1/actions/{action_id}").json()
            return body if body.get("finished") else None

        return wait_until(finished, timeout=timeout, interval=0.2)


def make_caller(dataverse, server, name: str, roles: list[str]) -> Caller:
    oid = str(uuid.uuid4())
    dataverse.add_system_user(name, oid, roles=roles)
    return Caller(server.url, dataverse.mint_user_token(oid, aud=CLIENT_ID), dataverse.url)


@pytest.fixture
def jane(dataverse, bridge_server, connection_id) -> Caller:
    return make_caller(dataverse, bridge_server, "Jane Doe", ["Salesperson", "ActiveCampaign User"])


def annotations(sales_user, record_id: str) -> list[dict]:
    """The notes on a Dynamics record, read through the Web API."""
    return list(
        sales_user.query(
            "annotations", select=["subject", "notetext"], filter=f"_objectid_value eq {record_id}"
        )
    )


def test_add_to_automation_from_a_lead_form_and_a_grid(
    jane, sales_user, activecampaign, start_workers, runtime, connection_id
):
    start_workers(1, queues=("actions",))
    welcome = activecampaign.seed_automation("Welcome series")
    activecampaign.seed_automation("Old nurture", status="2")
    first = sales_user.create("leads", {"lastname": "Ada", "emailaddress1": "ada@example.com"})
    second = sales_user.create("leads", {"lastname": "Grace", "emailaddress1": "grace@example.com"})
    no_email = sales_user.create("leads", {"lastname": "Nobody"})

    ids = [f"{{{first.upper()}}}", second, no_email, first]  # braces, case, duplicate
    response = jane.post(
        "/api/v1/actions/add-to-automation",
        {"entity": "lead", "record_ids": ids, "automation_id": welcome},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == accepted["status_url"]

    result = jane.wait_done(accepted["action_id"])
    statuses = {r["record_id"]: r["status"] for r in result["records"]}
    assert statuses == {first: "done", second: "done", no_email: "skipped_no_email"}
    assert result["counts"] == {"done": 2, "skipped_no_email": 1}
    assert result["target_name"] == "Welcome series" and result["user_name"] == "Jane Doe"

    for email in ("ada@example.com", "grace@example.com"):
        assert activecampaign.find_contact(email)["automations"] == [welcome]
    notes = annotations(sales_user, first)
    assert [n["subject"] for n in notes] == [
        "ActiveCampaign: Added to automation 'Welcome series' by Jane Doe"
    ]
    assert annotations(sales_user, no_email) == []

    with runtime.db.session() as session:
        log = session.scalar(select(ActionLog).where(ActionLog.id == accepted["action_id"]))
        assert (log.connection_id, log.action, log.target_id) == (
            connection_id, "add_to_automation", welcome,
        )
        assert log.record_ids == [first, second, no_email]
        assert log.status == "done" and log.finished_at is not None
        assert log.results[first]["ac_contact_id"] == activecampaign.find_contact(
            "ada@example.com"
        )["id"]

    # Again for the same lead: already in it, not added twice.
    again = jane.post(
        "/api/v1/actions/add-to-automation",
        {"entity": "lead", "record_ids": [first], "automation_id": welcome},
    )
    result = jane.wait_done(again.json()["action_id"])
    assert result["records"][0]["status"] == "already_in_automation"
    assert activecampaign.find_contact("ada@example.com")["automations"] == [welcome]


def test_send_campaign_to_three_contacts_and_idempotency(
    jane, sales_user, activecampaign, start_workers
):
    start_workers(1, queues=("actions",))
    campaign = activecampaign.seed_campaign("Spring newsletter", message_subject="Spring!")
    contacts = [
        sales_user.create("contacts", {"lastname": f"C{n}", "emailaddress1": f"c{n}@example.com"})
        for n in range(3)
    ]
    body = {"entity": "contact", "record_ids": contacts, "campaign_id": campaign}
    first = jane.post("/api/v1/actions/send-campaign", body, **{"Idempotency-Key": "k-1"})
    retried = jane.post("/api/v1/actions/send-campaign", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == retried.status_code == 202
    assert retried.json()["action_id"] == first.json()["action_id"]

    result = jane.wait_done(first.json()["action_id"])
    assert [r["status"] for r in result["records"]] == ["done"] * 3
    sends = [e for e in activecampaign.request_log if e["path"] == "/admin/api.php"]
    assert len(sends) == 3
    for n, contact_id in enumerate(contacts):
        assert activecampaign.find_contact(f"c{n}@example.com")["sentcnt"] == 1
        notes = annotations(sales_user, contact_id)
        assert [x["subject"] for x in notes] == [
            "ActiveCampaign: Sent campaign 'Spring newsletter' by Jane Doe"
        ]

    # The same key for a different request is refused.
    other = dict(body, record_ids=contacts[:1])
    reused = jane.post("/api/v1/actions/send-campaign", other, **{"Idempotency-Key": "k-1"})
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    # A second click without a key (or a colleague) does not send the campaign twice.
    second = jane.post("/api/v1/actions/send-campaign", other)
    result = jane.wait_done(second.json()["action_id"])
    assert result["records"][0]["status"] == "already_sent"
    assert len([e for e in activecampaign.request_log if e["path"] == "/admin/api.php"]) == 3


def test_lists_are_sorted_filtered_and_cached(jane, activecampaign):
    activecampaign.seed_automation("Zebra drip")
    activecampaign.seed_automation("Archived flow", status="2")
    activecampaign.seed_automation("Welcome series")
    activecampaign.seed_campaign("Spring newsletter")
    activecampaign.seed_campaign("Draft idea", status="0")
    activecampaign.seed_campaign("Autoresponder", type="responder")

    automations = jane.get("/api/v1/automations").json()["automations"]
    assert [(a["name"], a["active"]) for a in automations] == [
        ("Welcome series", True), ("Zebra drip", True), ("Archived flow", False),
    ]
    assert [a["name"] for a in jane.get("/api/v1/automations", search="WEL").json()[
        "automations"]] == ["Welcome series"]
    calls = [e for e in activecampaign.request_log if e["path"] == "/api/3/automations"]
    assert len(calls) == 1  # the second list came from the cache

    campaigns = jane.get("/api/v1/campaigns").json()["campaigns"]
    assert [(c["name"], c["status"]) for c in campaigns] == [("Spring newsletter", "completed")]
    assert campaigns[0]["last_sent_at"]


def test_errors_of_the_action_endpoints(
    jane, dataverse, bridge_server, activecampaign, runtime, connection_id
):
    automation = activecampaign.seed_automation("Welcome series")
    inactive = activecampaign.seed_automation("Old", status="2")
    lead = str(uuid.uuid4())

    def post(path, body, caller=jane):
        return caller.post(f"/api/v1/actions/{path}", body)

    def code(response):
        return response.status_code, response.json()["error"]["code"]

    valid = {"entity": "lead", "record_ids": [lead], "automation_id": automation}
    assert code(post("add-to-automation", dict(valid, record_ids=["nope", lead]))) == (
        422, "invalid_record_ids",
    )
    bad = post("add-to-automation", dict(valid, record_ids=["nope", lead])).json()
    assert list(bad["error"]["fields"]["record_ids"]) == ["0"]
    too_many = [str(uuid.uuid4()) for _ in range(251)]
    assert code(post("add-to-automation", dict(valid, record_ids=too_many))) == (
        422, "too_many_records",
    )
    assert code(post("add-to-automation", dict(valid, record_ids=[])))[0] == 422
    assert code(post("add-to-automation", dict(valid, entity="account")))[0] == 422
    assert code(post("add-to-automation", dict(valid, automation_id="999"))) == (
        422, "unknown_automation",
    )
    assert code(post("add-to-automation", dict(valid, automation_id=inactive))) == (
        422, "automation_inactive",
    )
    campaign_body = {"entity": "lead", "record_ids": [lead], "campaign_id": "999"}
    assert code(post("send-campaign", campaign_body)) == (422, "unknown_campaign")

    # Missing role, missing token, wrong tenant.
    admin = make_caller(dataverse, bridge_server, "Sam Admin", ["System Administrator"])
    assert code(post("add-to-automation", valid, admin)) == (403, "user_role_required")
    assert code(admin.get("/api/v1/automations")) == (403, "user_role_required")
    anonymous = Caller(bridge_server.url, None, dataverse.url)
    assert code(post("add-to-automation", valid, anonymous)) == (401, "missing_token")
    oid = str(uuid.uuid4())
    dataverse.add_system_user("Eve", oid, roles=["ActiveCampaign User"])
    foreign_token = dataverse.mint_user_token(oid, aud=CLIENT_ID, tid=str(uuid.uuid4()))
    foreign = Caller(bridge_server.url, foreign_token, dataverse.url)
    assert code(post("add-to-automation", valid, foreign)) == (403, "unknown_organization")

    # Another organization's action is invisible.
    with runtime.db.session() as session:
        other = create_connection(
            session, runtime.secrets, dataverse_url="https://other.crm.dynamics.com",
            dataverse_org_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()),
        )
        session.flush()
        theirs = ActionLog(
            connection_id=other.id, action="send_campaign", target_id="1", target_name="X",
            entity="lead", record_ids=[lead], user_systemuser_id=str(uuid.uuid4()),
            user_name="Mallory", results={},
        )
        session.add(theirs)
        session.flush()
        their_id = theirs.id
    assert code(jane.get(f"/api/v1/actions/{their_id}")) == (404, "unknown_action")
    assert code(jane.get("/api/v1/actions/987654")) == (404, "unknown_action")

    # Sync turned off: refused with the reason.
    from bridge.models import Connection

    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    assert code(post("add-to-automation", valid)) == (409, "sync_paused")


def test_rate_limits_and_5xx_during_the_action_are_retried(
    jane, sales_user, activecampaign, start_workers, bridge_env, runtime, connection_id
):
    # The bridge believes it may send 20/s; the account allows 2/s: 429s are certain.
    bridge_env["AC_REQUESTS_PER_SECOND"] = "20"
    start_workers(1, queues=("actions",))
    welcome = activecampaign.seed_automation("Welcome series")
    excluded = sales_user.create(
        "leads", {"lastname": "Out", "emailaddress1": "out@example.com", "companyname": "Other"}
    )
    leads = [
        sales_user.create(
            "leads",
            {"lastname": f"L{n}", "emailaddress1": f"l{n}@example.com", "companyname": "Acme"},
        )
        for n in range(4)
    ]
    with runtime.db.session() as session:
        session.add(EntityConfig(
            connection_id=connection_id, entity="lead", mode="criteria",
            criteria=[{"field": "companyname", "operator": "eq", "value": "Acme"}],
        ))
    jane.get("/api/v1/automations")  # cache the list before the account gets slow
    activecampaign.set_limits(requests_per_second=2)
    activecampaign.fail_next(2, status=503, path_contains="contactAutomations")
    activecampaign.fail_next(1, status=502, path_contains="contact/sync")

    response = jane.post(
        "/api/v1/actions/add-to-automation",
        {"entity": "lead", "record_ids": [*leads, excluded], "automation_id": welcome},
    )
    started = time.monotonic()
    result = jane.wait_done(response.json()["action_id"], timeout=45)
    statuses = {r["record_id"]: r["status"] for r in result["records"]}
    assert statuses == {**{lead: "done" for lead in leads}, excluded: "skipped_excluded"}
    assert "criteria" in next(r for r in result["records"] if r["record_id"] == excluded)[
        "detail"]
    for n in range(4):
        assert activecampaign.find_contact(f"l{n}@example.com")["automations"] == [welcome]
    assert activecampaign.find_contact("out@example.com") is None
    assert activecampaign.count_status(429) > 0
    assert activecampaign.count_status(503) == 2 and activecampaign.count_status(502) == 1
    posts = [
        e for e in activecampaign.request_log
        if e["method"] == "POST" and e["path"] == "/api/3/contactAutomations"
        and e["status"] == 201
    ]
    assert len(posts) == 4  # each contact added exactly once
    assert time.monotonic() - started < 45


def test_two_users_on_the_same_record_add_it_once(
    jane, dataverse, bridge_server, sales_user, activecampaign, start_workers
):
    start_workers(2, queues=("actions",))
    welcome = activecampaign.seed_automation("Welcome series")
    lead = sales_user.create("leads", {"lastname": "Ada", "emailaddress1": "ada@example.com"})
    john = make_caller(dataverse, bridge_server, "John Roe", ["ActiveCampaign User"])
    body = {"entity": "lead", "record_ids": [lead], "automation_id": welcome}
    ids = [caller.post("/api/v1/actions/add-to-automation", body).json()["action_id"]
           for caller in (jane, john)]
    assert ids[0] != ids[1]
    results = sorted(jane.wait_done(i)["records"][0]["status"] for i in ids)
    assert results == ["already_in_automation", "done"]
    added = [
        e for e in activecampaign.request_log
        if e["method"] == "POST" and e["path"] == "/api/3/contactAutomations"
    ]
    assert len(added) == 1
    assert activecampaign.find_contact("ada@example.com")["automations"] == [welcome]
    # Only the action that added the contact writes "Added to automation" on the record.
    assert len(annotations(sales_user, lead)) == 1
