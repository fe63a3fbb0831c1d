"""Consistency rules: echo suppression by the application user, conflicts settled by the
connection's rule, a lead qualified into a contact.

(The loop test — an ActiveCampaign change written to Dynamics fires the Dynamics
webhook and causes no ActiveCampaign write — is in ``test_inbound.py``.)
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bridge.config import load_settings
from bridge.connections import create_connection
from bridge.models import Connection, RecordLink
from bridge.queueing import (
    REALTIME_QUEUE,
    enqueue_contact_pull,
    get_queue,
    inbound_pending_key,
)
from bridge.runtime import Runtime
from tests.integration.conftest import AC_KEY, CLIENT_ID, wait_until
from tests.integration.test_delta_sync import synced_leads, work_off
from workers.inbound import pull_contact, register_activecampaign_webhook
from workers.sync import push_record

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime(bridge_env):
    rt = Runtime(load_settings(bridge_env))
    yield rt
    rt.db.engine.dispose()
    rt.redis.close()


@pytest.fixture
def connection_id(runtime, dataverse, activecampaign) -> int:
    """A connection with no Dataverse webhooks: changes wait until a test pushes them."""
    with runtime.db.session() as session:
        return create_connection(
            session, runtime.secrets,
            dataverse_url=dataverse.url, dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id, ac_api_url=activecampaign.url, ac_api_key=AC_KEY,
        ).id


def link_of(runtime, entity: str, record_id: str) -> RecordLink | None:
    with runtime.db.session() as session:
        return session.scalar(
            select(RecordLink).where(RecordLink.entity == entity,
                                     RecordLink.dynamics_id == record_id)
        )


# --- the application user ------------------------------------------------------------------


def test_writes_by_the_bridge_application_user_are_ignored_even_without_a_tag(
    connected, bridge_server, bridge_env, dataverse, activecampaign, sales_user, start_workers
):
    rt = Runtime(load_settings(bridge_env))
    with rt.db.session() as session:
        app_user = session.get(Connection, connected).dataverse_app_user_id
    assert app_user == dataverse.app_user_id(CLIENT_ID)  # WhoAmI at connect time
    queue = get_queue(rt.redis, REALTIME_QUEUE)

    lead_id = dataverse.create_record(
        "lead", {"lastname": "Echo", "emailaddress1": "echo@example.com"}, user_id=app_user)
    dataverse.update_record("lead", lead_id, {"firstname": "Still echo"}, user_id=app_user)
    dataverse.wait_for_deliveries(2)
    assert all(d["status"] == 202 for d in dataverse.webhook_deliveries)
    assert queue.count == 0  # nothing queued for the bridge's own changes

    sales_user.update("leads", lead_id, {"firstname": "A person"})  # the contrast
    wait_until(lambda: queue.count == 1)

    # The record the bridge never pushed is linked (not duplicated) by the create-lead action.
    hook = register_activecampaign_webhook(rt, connected)
    contact_id = activecampaign.seed_contact("echo@example.com", firstName="Echo")
    activecampaign.fire_automation_webhook(hook + "/create-lead", contact_id, 1)
    start_workers(1)
    wait_until(lambda: (link := link_of(rt, "lead", lead_id)) and link.status == "synced")
    wait_until(lambda: "D365: Pulled from ActiveCampaign" in
               activecampaign.find_contact("echo@example.com")["tags"])
    assert link_of(rt, "lead", lead_id).ac_contact_id == contact_id
    assert len([r for r in dataverse.store.find("lead")
                if r.get("emailaddress1") == "echo@example.com"]) == 1
    assert set(activecampaign.find_contact("echo@example.com")["tags"]) >= {
        "D365: Lead", "D365: Pulled from ActiveCampaign"}
    rt.db.engine.dispose()


# --- conflicts ---------------------------------------------------------------------------------


def set_rule(runtime, connection_id, rule: str) -> None:
    with runtime.db.session() as session:
        session.get(Connection, connection_id).conflict_rule = rule


@pytest.mark.parametrize(
    ("rule", "dynamics_first", "expected"),
    [
        ("dynamics_wins", False, "FromDynamics"),
        ("activecampaign_wins", True, "FromAc"),
        ("activecampaign_wins", False, "FromAc"),
        ("most_recent", True, "FromAc"),  # ActiveCampaign edited last
        ("most_recent", False, "FromDynamics"),  # Dynamics edited last
    ],
)
def test_a_field_changed_on_both_sides_is_settled_by_the_rule_and_recorded(
    runtime, connection_id, sales_user, activecampaign, dataverse, rule, dynamics_first, expected
):
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    set_rule(runtime, connection_id, rule)
    ac_id = activecampaign.find_contact("l0@example.com")["id"]

    def edit_dynamics():  # a lost webhook: this change is still waiting to be pushed
        sales_user.update("leads", lead_id, {"firstname": "FromDynamics"})

    def edit_activecampaign():  # the lastname changes only here: no conflict on it
        activecampaign.seed_contact("l0@example.com", firstName="FromAc", lastName="AcOnly")

    first, second = ((edit_dynamics, edit_activecampaign) if dynamics_first
                     else (edit_activecampaign, edit_dynamics))
    first()
    time.sleep(1.1)  # ActiveCampaign's udate has one-second resolution
    second()

    result = pull_contact(runtime, connection_id, ac_id, "update")
    [record] = result["records"].values()
    assert record["conflicts"] == 1
    work_off(runtime)  # the push queued when Dynamics' value stands

    row = dataverse.get_record("lead", lead_id)
    assert row["firstname"] == expected
    assert row["lastname"] == "AcOnly"  # one-sided change: always taken
    assert activecampaign.find_contact("l0@example.com")["firstName"] == expected
    link = link_of(runtime, "lead", lead_id)
    assert "firstname" in link.last_conflict and rule in link.last_conflict
    assert "lastname" not in link.last_conflict


def test_a_change_made_only_in_dynamics_is_not_overwritten_by_a_pull(
    runtime, connection_id, sales_user, activecampaign, dataverse
):
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    set_rule(runtime, connection_id, "activecampaign_wins")
    sales_user.update("leads", lead_id, {"firstname": "NewInDynamics"})
    activecampaign.seed_contact("l0@example.com", lastName="NewInAc")
    ac_id = activecampaign.find_contact("l0@example.com")["id"]

    [record] = pull_contact(runtime, connection_id, ac_id, "update")["records"].values()

    assert record["conflicts"] == 0
    assert record["push_queued"] is True
    assert dataverse.get_record("lead", lead_id)["firstname"] == "NewInDynamics"
    assert dataverse.get_record("lead", lead_id)["lastname"] == "NewInAc"
    work_off(runtime)
    assert activecampaign.find_contact("l0@example.com")["firstName"] == "NewInDynamics"


@pytest.mark.parametrize("runs_first", ["pull", "push"])
@pytest.mark.parametrize(
    ("rule", "dynamics_first", "expected"),
    [
        ("dynamics_wins", False, "FromDynamics"),
        ("dynamics_wins", True, "FromDynamics"),
        ("activecampaign_wins", False, "FromAc"),
        ("activecampaign_wins", True, "FromAc"),
        ("most_recent", True, "FromAc"),  # ActiveCampaign edited last
        ("most_recent", False, "FromDynamics"),  # Dynamics edited last
    ],
)
def test_a_push_that_runs_before_the_queued_pull_applies_the_conflict_rule_too(
    runtime, connection_id, sales_user, activecampaign, dataverse, rule, dynamics_first,
    expected, runs_first,
):
    """Issue #6: the Dynamics push must not overwrite an ActiveCampaign edit whose pull is
    still queued; whichever job runs first, the rule decides and the conflict is noted."""
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    set_rule(runtime, connection_id, rule)
    ac_id = activecampaign.find_contact("l0@example.com")["id"]

    def edit_dynamics():  # its webhook's push job runs below
        sales_user.update("leads", lead_id, {"firstname": "FromDynamics"})

    def edit_activecampaign():  # the account webhook queues a pull (not run yet)
        activecampaign.seed_contact("l0@example.com", firstName="FromAc", lastName="AcOnly")
        assert enqueue_contact_pull(runtime.redis, connection_id, ac_id, "update", "update")

    first, second = ((edit_dynamics, edit_activecampaign) if dynamics_first
                     else (edit_activecampaign, edit_dynamics))
    first()
    time.sleep(1.1)  # ActiveCampaign's udate has one-second resolution
    second()

    if runs_first == "push":
        assert push_record(runtime, connection_id, "lead", lead_id).outcome in (
            "synced", "unchanged")
        # The push settled the pull and claimed it; the queued job is still harmless.
        assert not runtime.redis.exists(
            inbound_pending_key(connection_id, "update", ac_id))
        link = link_of(runtime, "lead", lead_id)
        assert "firstname" in link.last_conflict and rule in link.last_conflict
        dv_log, ac_log = len(dataverse.request_log), len(activecampaign.request_log)
        work_off(runtime)  # the queued pull job
        assert [e for e in dataverse.request_log[dv_log:] if e["method"] == "PATCH"] == []
        assert [e for e in activecampaign.request_log[ac_log:]
                if e["method"] in ("POST", "PUT", "DELETE")] == []
    else:
        [record] = pull_contact(runtime, connection_id, ac_id, "update")["records"].values()
        assert record["conflicts"] == 1
        push_record(runtime, connection_id, "lead", lead_id)  # the Dynamics webhook's job
        work_off(runtime)  # the queued pull, and the push queued when Dynamics' value stands

    row = dataverse.get_record("lead", lead_id)
    assert row["firstname"] == expected
    assert row["lastname"] == "AcOnly"  # one-sided change: always taken
    contact = activecampaign.find_contact("l0@example.com")
    assert (contact["firstName"], contact["lastName"]) == (expected, "AcOnly")
    link = link_of(runtime, "lead", lead_id)
    assert "firstname" in link.last_conflict and rule in link.last_conflict
    assert "lastname" not in link.last_conflict
    assert link.status == "synced"


def test_a_push_with_no_pull_queued_makes_no_extra_activecampaign_request(
    runtime, connection_id, sales_user, activecampaign
):
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    ac_id = activecampaign.find_contact("l0@example.com")["id"]
    sales_user.update("leads", lead_id, {"firstname": "OnlyInDynamics"})
    activecampaign.reset_log()

    assert push_record(runtime, connection_id, "lead", lead_id).outcome == "synced"

    assert [(e["method"], e["path"]) for e in activecampaign.request_log] == [
        ("POST", "/api/3/contact/sync")]  # the write itself: no read of the contact
    assert activecampaign.find_contact("l0@example.com")["id"] == ac_id
    assert activecampaign.find_contact("l0@example.com")["firstName"] == "OnlyInDynamics"


# --- a qualified lead ---------------------------------------------------------------------------


def test_a_lead_qualified_into_a_contact_moves_the_link_and_swaps_the_tag(
    runtime, connection_id, sales_user, activecampaign
):
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    assert set(activecampaign.find_contact("l0@example.com")["tags"]) == {
        "D365: Lead", "D365: Pushed from Dynamics"}

    contact_id = sales_user.create(
        "contacts", {"lastname": "L0", "emailaddress1": "l0@example.com"})
    sales_user.update("leads", lead_id, {"statecode": 1, "statuscode": 3})
    assert push_record(runtime, connection_id, "contact", contact_id).outcome == "synced"

    contact = activecampaign.find_contact("l0@example.com")
    assert set(contact["tags"]) == {"D365: Contact", "D365: Pushed from Dynamics"}
    assert len(activecampaign.contacts()) == 1
    assert link_of(runtime, "lead", lead_id) is None
    assert link_of(runtime, "contact", contact_id).ac_contact_id == contact["id"]
    # The qualified lead's own (late) sync neither relinks it nor brings the tag back.
    assert push_record(runtime, connection_id, "lead", lead_id).outcome == "unlinked"
    assert link_of(runtime, "lead", lead_id) is None
    assert "D365: Lead" not in activecampaign.find_contact("l0@example.com")["tags"]


def test_an_open_lead_and_a_contact_of_the_same_person_both_stay_linked(
    runtime, connection_id, sales_user, activecampaign
):
    [lead_id] = synced_leads(runtime, connection_id, sales_user, count=1)
    contact_id = sales_user.create(
        "contacts", {"lastname": "L0", "emailaddress1": "l0@example.com"})
    push_record(runtime, connection_id, "contact", contact_id)
    assert link_of(runtime, "lead", lead_id) is not None
    assert set(activecampaign.find_contact("l0@example.com")["tags"]) == {
        "D365: Lead", "D365: Contact", "D365: Pushed from Dynamics"}
