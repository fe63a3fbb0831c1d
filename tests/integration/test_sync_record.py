"""``workers.sync.push_record`` against both emulators, a real Redis and a real database."""

from __future__ import annotations

import pytest
import redis as redis_lib
from sqlalchemy import select

from bridge.config import load_settings
from bridge.connections import create_connection
from bridge.mapping import AC_CONTACT_ID_COLUMN
from bridge.models import Connection, LinkStatus, RecordLink
from bridge.queueing import pending_key
from bridge.runtime import Runtime
from tests.integration.conftest import AC_KEY
from workers.sync import Outcome, push_record, record_final_failure


@pytest.fixture
def connection_id(runtime, dataverse, activecampaign) -> int:
    with runtime.db.session() as session:
        connection = create_connection(
            session,
            runtime.secrets,
            dataverse_url=dataverse.url,
            dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id,
            ac_api_url=activecampaign.url,
            ac_api_key=AC_KEY,
        )
        return connection.id


@pytest.fixture
def users(sales_user):
    """Someone editing records in Dynamics (not the bridge's own app user)."""
    return sales_user


def link_of(runtime, entity: str, record_id: str) -> RecordLink | None:
    with runtime.db.session() as session:
        return session.scalar(
            select(RecordLink).where(
                RecordLink.entity == entity, RecordLink.dynamics_id == record_id
            )
        )


def new_lead(users, **values) -> str:
    body = {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "emailaddress1": "Ada@Example.com ",
        "telephone1": "+44 20 7946 0001",
    }
    body.update(values)
    return users.create("leads", body)


def test_lead_becomes_one_tagged_contact_and_a_link(runtime, connection_id, users, activecampaign):
    lead_id = new_lead(users)
    runtime.redis.set(pending_key(connection_id, "lead", lead_id), 1)

    outcome = push_record(runtime, connection_id, "lead", lead_id)

    assert outcome.outcome == Outcome.SYNCED
    assert not runtime.redis.exists(pending_key(connection_id, "lead", lead_id))  # claimed
    contact = activecampaign.find_contact("ada@example.com")
    assert (contact["firstName"], contact["lastName"], contact["phone"]) == (
        "Ada",
        "Lovelace",
        "+44 20 7946 0001",
    )
    assert set(contact["tags"]) == {"D365: Lead", "D365: Pushed from Dynamics"}
    assert outcome.ac_contact_id == contact["id"]

    link = link_of(runtime, "lead", lead_id)
    assert link.status == LinkStatus.SYNCED
    assert (link.ac_contact_id, link.email) == (contact["id"], "ada@example.com")
    assert link.pushed_hash and link.last_synced_at and link.last_error is None
    row = users.get("leads", lead_id, select=[AC_CONTACT_ID_COLUMN, "ac_lastsyncedon"])
    assert row[AC_CONTACT_ID_COLUMN] == contact["id"]
    assert row["ac_lastsyncedon"]


def test_contact_gets_the_contact_tag(runtime, connection_id, users, activecampaign):
    contact_id = users.create(
        "contacts",
        {"lastname": "Hopper", "emailaddress1": "g@example.com", "mobilephone": "555-0100"},
    )
    assert push_record(runtime, connection_id, "contact", contact_id).outcome == Outcome.SYNCED
    contact = activecampaign.find_contact("g@example.com")
    assert contact["phone"] == "555-0100"  # mobile phone when there is no business phone
    assert set(contact["tags"]) == {"D365: Contact", "D365: Pushed from Dynamics"}


def test_update_and_email_change_keep_the_same_contact(
    runtime, connection_id, users, activecampaign
):
    lead_id = new_lead(users)
    first = push_record(runtime, connection_id, "lead", lead_id)

    users.update("leads", lead_id, {"firstname": "Augusta"})
    second = push_record(runtime, connection_id, "lead", lead_id)
    assert second.outcome == Outcome.SYNCED
    assert second.ac_contact_id == first.ac_contact_id
    assert activecampaign.find_contact("ada@example.com")["firstName"] == "Augusta"

    users.update("leads", lead_id, {"emailaddress1": "augusta@example.com"})
    third = push_record(runtime, connection_id, "lead", lead_id)
    assert third.outcome == Outcome.SYNCED
    assert third.ac_contact_id == first.ac_contact_id
    assert activecampaign.find_contact("ada@example.com") is None
    moved = activecampaign.find_contact("augusta@example.com")
    assert moved["id"] == first.ac_contact_id
    assert len(activecampaign.contacts()) == 1
    assert link_of(runtime, "lead", lead_id).email == "augusta@example.com"


def test_unchanged_row_makes_no_activecampaign_request(
    runtime, connection_id, users, activecampaign
):
    lead_id = new_lead(users)
    push_record(runtime, connection_id, "lead", lead_id)
    activecampaign.reset_log()

    outcome = push_record(runtime, connection_id, "lead", lead_id)

    assert outcome.outcome == Outcome.UNCHANGED
    assert activecampaign.request_log == []


def test_no_email_is_excluded(runtime, connection_id, users, activecampaign):
    lead_id = users.create("leads", {"lastname": "Nomail"})
    outcome = push_record(runtime, connection_id, "lead", lead_id)
    assert outcome.outcome == Outcome.EXCLUDED
    link = link_of(runtime, "lead", lead_id)
    assert (link.status, link.last_error) == (LinkStatus.EXCLUDED, "no email address")
    assert activecampaign.contacts() == []


def test_deleted_record_is_unlinked_and_loses_its_tags(
    runtime, connection_id, users, activecampaign
):
    lead_id = new_lead(users)
    activecampaign.seed_contact("ada@example.com", tags=["newsletter"])
    push_record(runtime, connection_id, "lead", lead_id)
    assert len(activecampaign.find_contact("ada@example.com")["tags"]) == 3

    users.delete("leads", lead_id)
    outcome = push_record(runtime, connection_id, "lead", lead_id)

    assert outcome.outcome == Outcome.UNLINKED
    assert link_of(runtime, "lead", lead_id) is None
    contact = activecampaign.find_contact("ada@example.com")  # history kept
    assert contact["tags"] == ["newsletter"]


def test_global_sync_off_writes_nothing_and_keeps_the_record_pending(
    runtime, connection_id, users, activecampaign
):
    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    lead_id = new_lead(users)
    activecampaign.reset_log()

    outcome = push_record(runtime, connection_id, "lead", lead_id)

    assert outcome.outcome == Outcome.PAUSED
    assert activecampaign.request_log == []
    assert link_of(runtime, "lead", lead_id).status == LinkStatus.PENDING

    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = True
    assert push_record(runtime, connection_id, "lead", lead_id).outcome == Outcome.SYNCED
    assert activecampaign.find_contact("ada@example.com")


def test_rejected_contact_is_failing_with_a_readable_error(
    runtime, connection_id, users, activecampaign
):
    activecampaign.seed_contact("taken@example.com")
    lead_id = new_lead(users)
    push_record(runtime, connection_id, "lead", lead_id)
    users.update("leads", lead_id, {"emailaddress1": "taken@example.com"})

    outcome = push_record(runtime, connection_id, "lead", lead_id)

    assert outcome.outcome == Outcome.FAILING
    link = link_of(runtime, "lead", lead_id)
    assert link.status == LinkStatus.FAILING
    assert link.last_error.startswith("ActiveCampaign rejected the contact: ")
    assert "already exists" in link.last_error.lower()
    assert len(activecampaign.contacts()) == 2  # no duplicate was created


def test_final_failure_is_written_to_the_ledger(runtime, connection_id):
    from bridge.clients import ActiveCampaignError

    error = ActiveCampaignError(
        503, "ActiveCampaign unavailable after 5 attempts: HTTP 503", transient=True
    )
    record_final_failure(runtime, connection_id, "lead", "{ABC}", error)
    link = link_of(runtime, "lead", "abc")
    assert link.status == LinkStatus.FAILING
    assert link.last_error == "ActiveCampaign unavailable after 5 attempts: HTTP 503"


def test_shared_limiter_is_used(runtime, connection_id, users, activecampaign):
    """Every push goes through the account's Redis window."""
    from bridge.ratelimit import activecampaign_limiter_key

    lead_id = new_lead(users)
    push_record(runtime, connection_id, "lead", lead_id)
    client = redis_lib.Redis.from_url(runtime.settings.redis_url)
    assert client.zcard(activecampaign_limiter_key(activecampaign.url)) >= 1
    client.close()


def test_rq_job_that_keeps_failing_leaves_a_readable_error(
    bridge_env, connection_id, users, activecampaign
):
    """A real RQ worker: transient errors are retried, the last one lands in the ledger."""
    import dataclasses

    from rq import Callback, Queue, Retry, SimpleWorker
    from rq.job import JobStatus

    from bridge.runtime import set_runtime
    from workers.tasks import sync_record, sync_record_failed

    lead_id = new_lead(users)
    settings = load_settings(bridge_env)
    # Entra is unreachable: every attempt fails at once with a transient error.
    broken = Runtime(dataclasses.replace(settings, entra_authority_host="https://127.0.0.1:9"))
    set_runtime(broken)
    try:
        queue = Queue("realtime", connection=broken.redis)
        job = queue.enqueue(sync_record, connection_id, "lead", lead_id, "Create",
                            retry=Retry(max=2), on_failure=Callback(sync_record_failed))
        SimpleWorker([queue], connection=broken.redis).work(burst=True)
        job.refresh()
        assert job.get_status() == JobStatus.FAILED
        assert job.retries_left == 0  # it was retried twice before giving up
        link = link_of(broken, "lead", lead_id)
    finally:
        set_runtime(None)
        broken.db.engine.dispose()
    assert link.status == LinkStatus.FAILING
    assert link.last_error == "could not reach the sign-in service (ConnectionError)"
    assert activecampaign.contacts() == []
