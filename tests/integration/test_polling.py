"""Changes made in ActiveCampaign through the API (no account webhook fires for them) are
picked up by the scheduled sync's ``contacts?filters[updated_after]`` poll."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.models import Connection, SyncCheckpoint
from tests.integration.test_delta_sync import synced_leads, work_off
from workers.delta_sync import run_delta_sync

pytestmark = pytest.mark.slow


def cursor_of(runtime):
    with runtime.db.session() as session:
        row = session.scalar(select(SyncCheckpoint).where(SyncCheckpoint.entity == "lead"))
        return row.ac_updated_after if row else None


def test_api_changes_in_activecampaign_are_polled_and_pulled(
    runtime, connection_id, sales_user, activecampaign, dataverse
):
    ids = synced_leads(runtime, connection_id, sales_user, count=3)
    first = run_delta_sync(runtime, connection_id)
    assert first["lead"]["polled"] == 0  # the first run only sets the cursor
    cursor = cursor_of(runtime)
    assert cursor
    work_off(runtime)

    # Another integration edits one contact through the API; an untagged contact changes too.
    activecampaign.seed_contact("l1@example.com", firstName="FromApi")
    activecampaign.seed_contact("stranger@example.com", firstName="Not synced")
    # Global sync off: nothing polled, the cursor stays, so the change is not lost.
    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    assert run_delta_sync(runtime, connection_id) == {"status": "paused"}
    assert cursor_of(runtime) == cursor
    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = True

    second = run_delta_sync(runtime, connection_id)
    assert second["lead"]["polled"] >= 1
    assert cursor_of(runtime) >= cursor
    work_off(runtime)
    assert dataverse.get_record("lead", ids[1])["firstname"] == "FromApi"
    assert dataverse.get_record("lead", ids[0]).get("firstname") is None  # untouched
    assert not any(r.get("emailaddress1") == "stranger@example.com"
                   for r in dataverse.store.find("lead"))
    assert [e for e in activecampaign.request_log
            if e["method"] != "GET" and "contact/sync" in e["path"]] == []
