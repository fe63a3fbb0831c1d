"""Initial sync: bulk import, request budget, progress, resume after SIGKILL, global switch."""

from __future__ import annotations

import json
import math
import os
import signal

import psutil
import pytest
from sqlalchemy import func, select

from bridge.connections import create_connection
from bridge.models import Connection, EntityConfig, LinkStatus, RecordLink, SyncRun
from tests.integration.conftest import AC_KEY, wait_until
from workers.initial_sync import (
    initial_sync_progress,
    resume_stalled,
    run_initial_sync,
    start_initial_sync,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def connection_id(runtime, dataverse, activecampaign) -> int:
    with runtime.db.session() as session:
        connection = create_connection(
            session, runtime.secrets,
            dataverse_url=dataverse.url, dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id, ac_api_url=activecampaign.url, ac_api_key=AC_KEY,
        )
        connection.initial_sync_status = "never"
        return connection.id


def seed(dataverse, entity: str, count: int, prefix: str, **extra) -> list[str]:
    return [
        dataverse.create_record(entity, {
            "firstname": f"First{i}", "lastname": f"Last{i}",
            "emailaddress1": f"{prefix}{i}@example.com", **extra,
        })
        for i in range(count)
    ]


def work_off_bulk_queue(runtime) -> None:
    """An in-process RQ worker runs what is queued on ``bulk``, then stops."""
    from rq import SimpleWorker

    from bridge.queueing import get_queue
    from bridge.runtime import set_runtime

    set_runtime(runtime)
    try:
        SimpleWorker([get_queue(runtime.redis, "bulk")], connection=runtime.redis).work(burst=True)
    finally:
        set_runtime(None)


def run_of(runtime, run_id) -> SyncRun:
    with runtime.db.session() as session:
        return session.get(SyncRun, run_id)


def link_counts(runtime) -> dict[str, int]:
    with runtime.db.session() as session:
        return dict(session.execute(
            select(RecordLink.status, func.count()).group_by(RecordLink.status)
        ).all())


def imported_contacts(activecampaign) -> int:
    return sum(len(b["contacts"]) for b in activecampaign.importer.batches.values())


def test_initial_sync_pushes_everything_in_bulk_within_the_request_budget(
    runtime, connection_id, dataverse, activecampaign
):
    seed(dataverse, "lead", 520, "lead")
    seed(dataverse, "contact", 130, "contact", donotbulkemail=False)
    dataverse.create_record("lead", {"lastname": "No email"})
    with runtime.db.session() as session:  # contacts only when they allow bulk email
        session.add(EntityConfig(
            connection_id=connection_id, entity="contact", mode="criteria",
            criteria=[{"field": "donotbulkemail", "operator": "eq", "value": False}],
        ))
    dataverse.create_record("contact", {"lastname": "Opted out", "donotbulkemail": True,
                                        "emailaddress1": "optout@example.com"})
    dataverse.request_log.clear()
    activecampaign.reset_log()

    run_id = start_initial_sync(runtime, connection_id, page_size=200)
    assert initial_sync_progress(runtime, connection_id)["status"] == "queued"
    summary = run_initial_sync(runtime, connection_id, run_id)

    assert summary == {"run_id": run_id, "status": "done", "total": 651, "done": 651, "failed": 0}
    contacts = activecampaign.contacts()
    assert len(contacts) == 650 and len({c["email"] for c in contacts}) == 650
    lead = activecampaign.find_contact("lead7@example.com")
    assert (lead["firstName"], lead["lastName"]) == ("First7", "Last7")
    assert set(lead["tags"]) == {"D365: Lead", "D365: Pushed from Dynamics"}
    assert set(activecampaign.find_contact("contact3@example.com")["tags"]) == {
        "D365: Contact", "D365: Pushed from Dynamics"}
    assert activecampaign.find_contact("optout@example.com") is None
    assert all(b["contacts"][0]["exclude_automations"] is True
               for b in activecampaign.importer.batches.values())

    # Request budget: one import + one import/info per ≤250 contacts of a page,
    # one Dataverse read per page plus one count per table.
    paths = [e["path"] for e in activecampaign.request_log]
    imports = paths.count("/api/3/import/bulk_import")
    lead_pages, contact_pages = math.ceil(521 / 200), 1
    assert imports == lead_pages + contact_pages
    assert set(paths) == {"/api/3/import/bulk_import", "/api/3/import/info"}
    assert 2 * imports <= len(paths) <= 3 * imports  # confirmations: ~one poll per import
    reads = [e for e in dataverse.request_log
             if e["method"] == "GET" and e["path"].startswith("/api/data/")]
    assert len(reads) == lead_pages + contact_pages + 2

    assert link_counts(runtime) == {LinkStatus.SYNCED: 650, LinkStatus.EXCLUDED: 1}
    with runtime.db.session() as session:
        link = session.scalar(select(RecordLink).where(RecordLink.email == "lead7@example.com"))
        assert link.ac_contact_id == lead["id"] and link.pushed_hash
        assert session.get(Connection, connection_id).initial_sync_status == "done"
    progress = initial_sync_progress(runtime, connection_id)
    assert progress["status"] == "done"
    assert (progress["total"], progress["done"], progress["failed"], progress["eta_s"]) == (
        651, 651, 0, 0.0)
    assert progress["rate_per_s"] > 0

    # On demand again: the ledger knows ActiveCampaign has it all, nothing is imported.
    activecampaign.reset_log()
    again = start_initial_sync(runtime, connection_id, page_size=200)
    assert again != run_id
    assert run_initial_sync(runtime, connection_id, again)["done"] == 651
    assert "/api/3/import/bulk_import" not in [e["path"] for e in activecampaign.request_log]


def test_worker_killed_mid_sync_resumes_from_the_checkpoint_without_duplicates(
    runtime, connection_id, dataverse, activecampaign, start_workers
):
    seed(dataverse, "lead", 600, "k")
    activecampaign.importer.delay_seconds = 0.4  # each page waits for its confirmation
    [worker] = start_workers(1, queues=("bulk",))
    run_id = start_initial_sync(runtime, connection_id, page_size=50)
    wait_until(lambda: run_of(runtime, run_id).records_done >= 150, timeout=30)
    # The machine dies: the worker and its work horse (RQ puts it in its own session).
    doomed = [worker.pid, *(p.pid for p in psutil.Process(worker.pid).children(recursive=True))]
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    worker.wait(timeout=10)

    killed_at = run_of(runtime, run_id)
    assert killed_at.status == "running" and killed_at.records_done < 600
    checkpoint = json.loads(killed_at.checkpoint)
    assert checkpoint["entity"] == "lead" and "skiptoken" in checkpoint["next_link"]
    assert resume_stalled(runtime) == 0  # the dead worker's lease has not expired yet

    start_workers(1, queues=("bulk",))
    wait_until(lambda: resume_stalled(runtime), timeout=25, interval=0.5)
    wait_until(lambda: run_of(runtime, run_id).status == "done", timeout=30)

    run = run_of(runtime, run_id)
    assert (run.records_total, run.records_done, run.records_failed) == (600, 600, 0)
    contacts = activecampaign.contacts()
    assert len(contacts) == 600 and len({c["email"] for c in contacts}) == 600
    assert link_counts(runtime) == {LinkStatus.SYNCED: 600}
    # Resumed, not restarted: at most the one unconfirmed page was imported twice.
    assert 600 <= imported_contacts(activecampaign) <= 650


def test_global_sync_off_pauses_the_initial_sync_until_switched_on(
    runtime, connection_id, dataverse, activecampaign
):
    seed(dataverse, "lead", 30, "p")
    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = False
    activecampaign.reset_log()
    run_id = start_initial_sync(runtime, connection_id)

    work_off_bulk_queue(runtime)
    assert run_of(runtime, run_id).status == "paused"
    assert activecampaign.request_log == []
    assert initial_sync_progress(runtime, connection_id)["status"] == "paused"
    assert resume_stalled(runtime) == 0  # nothing to do while sync is off

    with runtime.db.session() as session:
        session.get(Connection, connection_id).global_sync_enabled = True
    assert resume_stalled(runtime) == 1
    work_off_bulk_queue(runtime)
    assert run_of(runtime, run_id).status == "done"
    assert len(activecampaign.contacts()) == 30


def test_first_initial_sync_starts_when_global_sync_is_on(runtime, connection_id):
    assert resume_stalled(runtime) == 1
    with runtime.db.session() as session:
        assert session.get(Connection, connection_id).initial_sync_status == "queued"
    assert resume_stalled(runtime) == 0  # already queued
