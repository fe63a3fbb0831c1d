"""Scheduled sync: lost webhooks repaired, deletions unlinked, expired tokens reconciled."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bridge.models import Connection, RecordLink, SyncCheckpoint, SyncRun
from bridge.queueing import get_queue
from bridge.runtime import set_runtime
from workers.delta_sync import enqueue_due, run_delta_sync
from workers.initial_sync import run_initial_sync, start_initial_sync

pytestmark = pytest.mark.slow


def work_off(runtime, queue="realtime") -> None:
    from rq import SimpleWorker

    set_runtime(runtime)
    try:
        SimpleWorker([get_queue(runtime.redis, queue)], connection=runtime.redis).work(burst=True)
    finally:
        set_runtime(None)


def synced_leads(runtime, connection_id, sales_user, count=4) -> list[str]:
    ids = [
        sales_user.create("leads", {"lastname": f"L{i}", "emailaddress1": f"l{i}@example.com"})
        for i in range(count)
    ]
    run_id = start_initial_sync(runtime, connection_id)
    assert run_initial_sync(runtime, connection_id, run_id)["status"] == "done"
    return ids


def token_of(runtime, entity="lead"):
    with runtime.db.session() as session:
        row = session.scalar(select(SyncCheckpoint).where(SyncCheckpoint.entity == entity))
        return row.delta_token if row else None


def test_first_run_reconciles_without_activecampaign_writes_then_repairs_lost_webhooks(
    runtime, connection_id, sales_user, activecampaign
):
    ids = synced_leads(runtime, connection_id, sales_user)
    activecampaign.reset_log()

    first = run_delta_sync(runtime, connection_id)
    assert first["lead"] == {"mode": "reconcile", "changed": 4, "deleted": 0, "failed": 0,
                             "polled": 0}
    assert activecampaign.request_log == []  # the ledger knows it is all in sync
    token = token_of(runtime)
    assert token

    # Changes whose webhooks never arrived: an update, a create, a delete.
    sales_user.update("leads", ids[0], {"firstname": "Changed"})
    new_id = sales_user.create("leads", {"lastname": "New", "emailaddress1": "new@example.com"})
    sales_user.delete("leads", ids[1])

    second = run_delta_sync(runtime, connection_id)
    assert {k: second["lead"][k] for k in ("mode", "changed", "deleted", "failed")} == {
        "mode": "delta", "changed": 2, "deleted": 1, "failed": 0}
    assert token_of(runtime) not in (None, token)
    work_off(runtime)

    assert activecampaign.find_contact("l0@example.com")["firstName"] == "Changed"
    assert set(activecampaign.find_contact("new@example.com")["tags"]) == {
        "D365: Lead", "D365: Pushed from Dynamics"}
    assert activecampaign.find_contact("l1@example.com")["tags"] == []  # history kept
    with runtime.db.session() as session:
        linked = set(session.scalars(select(RecordLink.dynamics_id)).all())
    assert linked == {ids[0], ids[2], ids[3], new_id}
    assert len(activecampaign.contacts()) == 5

    # Since then only the bridge's own write-backs of the contact ids changed the rows:
    # they are re-checked against the ledger hash and cost ActiveCampaign no write (the
    # poll of contacts changed in ActiveCampaign reads, and finds only the bridge's pushes).
    activecampaign.reset_log()
    assert run_delta_sync(runtime, connection_id)["lead"]["changed"] == 2
    work_off(runtime)
    assert [e for e in activecampaign.request_log if e["method"] != "GET"] == []
    assert run_delta_sync(runtime, connection_id)["lead"]["changed"] == 0


def test_expired_token_falls_back_to_full_reconciliation(
    runtime, connection_id, sales_user, activecampaign, dataverse
):
    ids = synced_leads(runtime, connection_id, sales_user)
    run_delta_sync(runtime, connection_id)
    sales_user.update("leads", ids[2], {"firstname": "Late"})
    dataverse.delete_record("lead", ids[3])
    dataverse.expire_delta_tokens()

    result = run_delta_sync(runtime, connection_id)

    assert {k: result["lead"][k] for k in ("mode", "changed", "deleted", "failed")} == {
        "mode": "reconcile", "changed": 3, "deleted": 1, "failed": 0}
    assert activecampaign.find_contact("l2@example.com")["firstName"] == "Late"  # bulk-pushed
    work_off(runtime)  # the vanished row is unlinked by the real-time engine
    assert activecampaign.find_contact("l3@example.com")["tags"] == []
    assert run_delta_sync(runtime, connection_id)["lead"]["mode"] == "delta"


def test_global_sync_off_leaves_the_token_so_changes_are_picked_up_later(
    runtime, connection_id, sales_user, activecampaign
):
    ids = synced_leads(runtime, connection_id, sales_user)
    run_delta_sync(runtime, connection_id)
    token = token_of(runtime)
    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    sales_user.update("leads", ids[0], {"firstname": "WhileOff"})

    assert run_delta_sync(runtime, connection_id) == {"status": "paused"}
    assert token_of(runtime) == token

    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = True
    assert run_delta_sync(runtime, connection_id)["lead"]["changed"] == 1
    work_off(runtime)
    assert activecampaign.find_contact("l0@example.com")["firstName"] == "WhileOff"


def test_tick_queues_connections_whose_frequency_has_elapsed(runtime, connection_id):
    assert enqueue_due(runtime) == []  # no initial sync yet
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        connection.initial_sync_status, connection.sync_frequency_hours = "done", 4
    assert enqueue_due(runtime) == [connection_id]
    assert enqueue_due(runtime) == []  # already queued
    work_off(runtime, "bulk")
    with runtime.db.session() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.kind == "scheduled")).one()
        assert run.status == "done"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    assert enqueue_due(runtime, now=later) == []
    assert enqueue_due(runtime, now=later + dt.timedelta(hours=1, minutes=1)) == [connection_id]
