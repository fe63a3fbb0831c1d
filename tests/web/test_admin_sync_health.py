"""Sync Health API: counts by status, failing records with errors, runs, Retry."""

from __future__ import annotations

from rq import Queue
from sqlalchemy import select

from bridge.models import Connection, RecordLink, SyncRun
from bridge.queueing import REALTIME_QUEUE

PATH = "/api/v1/admin/sync-health"


def _seed(admin_api) -> int:
    with admin_api.runtime.db.session() as session:
        connection_id = session.scalar(select(Connection.id))
        for n, status in enumerate(["synced", "synced", "excluded", "failing", "pending"]):
            session.add(RecordLink(
                connection_id=connection_id, entity="lead",
                dynamics_id=f"00000000-0000-0000-0000-00000000000{n}",
                email=f"p{n}@example.com", status=status,
                last_error="ActiveCampaign rejected the contact: Email address is not valid."
                if status == "failing" else None,
            ))
        session.add(SyncRun(connection_id=connection_id, kind="initial", status="done",
                            records_total=5, records_done=4, records_failed=1))
    return connection_id


def test_counts_failing_and_runs(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    _seed(admin_api)
    body = admin_api.call("GET", PATH, oid).get_json()
    assert body["counts"] == {"synced": 2, "excluded": 1, "failing": 1, "pending": 1}
    assert len(body["failing"]) == 1
    assert body["failing"][0]["error"].endswith("Email address is not valid.")
    assert body["failing"][0]["email"] == "p3@example.com"
    assert body["runs"][0]["kind"] == "initial" and body["runs"][0]["records_failed"] == 1


def test_retry_queues_the_record_once(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    _seed(admin_api)
    link_id = admin_api.call("GET", PATH, oid).get_json()["failing"][0]["id"]
    retried = admin_api.call("POST", f"{PATH}/failing/{link_id}/retry", oid)
    assert retried.status_code == 202, retried.get_json()
    assert retried.get_json() == {"id": link_id, "queued": True}
    queue = Queue(REALTIME_QUEUE, connection=admin_api.runtime.redis)
    jobs = queue.get_jobs()
    assert len(jobs) == 1
    assert "00000000-0000-0000-0000-000000000003" in [*jobs[0].args, *jobs[0].kwargs.values()]
    body = admin_api.call("GET", PATH, oid).get_json()
    assert body["counts"]["failing"] == 0 and body["counts"]["pending"] == 2
    # Not failing any more, or not ours: refused.
    assert admin_api.call("POST", f"{PATH}/failing/{link_id}/retry", oid).status_code == 409
    assert admin_api.call("POST", f"{PATH}/failing/9999/retry", oid).status_code == 404


def test_sync_health_needs_the_admin_role(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    sales = admin_api.user(["Salesperson", "ActiveCampaign User"], name="Jane Doe")
    assert admin_api.call("GET", PATH, sales).status_code == 403
    assert admin_api.call("POST", f"{PATH}/failing/1/retry", sales).status_code == 403
    expired = admin_api.token(oid, expires_in=-600)
    assert admin_api.call("GET", PATH, token=expired).status_code == 401
