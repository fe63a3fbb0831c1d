"""Dynamics → ActiveCampaign end to end: Web API write, webhook, queue, worker, ledger."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.db import Database
from bridge.models import LinkStatus, RecordLink
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("entity", "entity_set", "tag"),
    [("lead", "leads", "D365: Lead"), ("contact", "contacts", "D365: Contact")],
)
def test_created_then_updated_record_becomes_one_tagged_linked_contact(
    entity, entity_set, tag, connected, sales_user, activecampaign, bridge_env, start_workers
):
    start_workers(2)
    email = f"ada.{entity}@example.com"
    record_id = sales_user.create(
        entity_set,
        {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "emailaddress1": email,
            "telephone1": "+44 20 7946 0001",
        },
    )
    created = wait_until(lambda: activecampaign.find_contact(email))
    assert (created["firstName"], created["lastName"]) == ("Ada", "Lovelace")
    assert created["phone"] == "+44 20 7946 0001"

    sales_user.update(entity_set, record_id, {"firstname": "Augusta", "telephone1": "+44 1"})
    expected_tags = {tag, "D365: Pushed from Dynamics"}
    # The create's job may still be tagging while the update's job has written the new
    # name (two workers), so wait for the final state rather than the first sign of it.
    updated = wait_until(
        lambda: (c := activecampaign.find_contact(email))
        and c["firstName"] == "Augusta"
        and set(c["tags"]) == expected_tags
        and c
    )
    assert updated["id"] == created["id"]
    assert updated["phone"] == "+44 1"
    assert len(activecampaign.contacts()) == 1

    db = Database(bridge_env["DATABASE_URL"])

    def synced_link():
        # The ledger is written after the ActiveCampaign calls, so it may trail them a little.
        with db.session() as session:
            link = session.scalars(select(RecordLink)).one_or_none()
        return link if link is not None and link.email == email and link.pushed_hash else None

    link = wait_until(synced_link)
    db.engine.dispose()
    assert (link.entity, link.dynamics_id) == (entity, record_id)
    assert link.ac_contact_id == created["id"]
    assert link.email == email
    assert link.status == LinkStatus.SYNCED
    assert link.pushed_hash and link.last_synced_at and link.last_error is None
