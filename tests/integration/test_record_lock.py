"""The per-record lock: two jobs for one record never run at the same time.

Real ``rq worker`` processes; jobs are enqueued straight onto the queue (bypassing
the webhook's coalescing) so that two of them for the same record are really
picked up together by two workers.
"""

from __future__ import annotations

import time
import uuid

import pytest
from rq.job import Job

from bridge.queueing import REALTIME_QUEUE, SYNC_RECORD_FUNC, get_queue
from tests.integration.conftest import wait_until
from workers.sync import lock_key

pytestmark = pytest.mark.slow


def enqueue_sync(runtime, connection_id: int, entity: str, record_id: str) -> Job:
    """A sync job exactly as the webhook queues it, without the coalescing marker."""
    return get_queue(runtime.redis, REALTIME_QUEUE).enqueue_call(
        SYNC_RECORD_FUNC,
        kwargs={"connection_id": connection_id, "entity": entity, "record_id": record_id,
                "message": "Update"},
        job_id=f"sync-test-{uuid.uuid4().hex[:12]}",
    )


def finished(jobs: list[Job]) -> bool:
    return all(job.get_status(refresh=True) in ("finished", "failed") for job in jobs)


def ac_writes(activecampaign, method: str, path: str) -> int:
    return sum(
        1 for e in activecampaign.request_log
        if e["method"] == method and e["path"].endswith(path) and e["status"] < 400
    )


def test_a_job_waits_while_another_holds_the_record(
    runtime, connection_id, sales_user, activecampaign, start_workers
):
    lead_id = sales_user.create("leads", {"lastname": "Held", "emailaddress1": "held@example.com"})
    holder = runtime.redis.lock(lock_key(connection_id, "lead", lead_id), timeout=30)
    assert holder.acquire(blocking=False)
    start_workers(1, queues=("realtime",))
    job = enqueue_sync(runtime, connection_id, "lead", lead_id)

    wait_until(lambda: job.get_status(refresh=True) == "started", timeout=15)
    time.sleep(1.5)
    assert job.get_status(refresh=True) == "started"  # blocked on the lock, not done
    assert activecampaign.find_contact("held@example.com") is None

    holder.release()
    wait_until(lambda: finished([job]), timeout=20)
    assert job.get_status() == "finished"
    assert job.return_value()["outcome"] == "synced"
    assert not runtime.redis.exists(lock_key(connection_id, "lead", lead_id))  # released


def test_a_burst_for_one_record_on_two_workers_writes_the_contact_once(
    runtime, connection_id, sales_user, activecampaign, start_workers
):
    lead_id = sales_user.create(
        "leads", {"firstname": "Bur", "lastname": "St", "emailaddress1": "burst@example.com"}
    )
    other_id = sales_user.create(
        "leads", {"firstname": "Oth", "lastname": "Er", "emailaddress1": "other@example.com"}
    )
    activecampaign.reset_log()
    # Both workers are up before the burst, so jobs are picked up concurrently.
    start_workers(2, queues=("realtime",))
    time.sleep(2.0)
    jobs = [enqueue_sync(runtime, connection_id, "lead", lead_id) for _ in range(6)]
    jobs.append(enqueue_sync(runtime, connection_id, "lead", other_id))
    wait_until(lambda: finished(jobs), timeout=45)

    outcomes = [job.return_value()["outcome"] for job in jobs[:6]]
    assert sorted(outcomes) == ["synced"] + ["unchanged"] * 5, outcomes
    assert jobs[6].return_value()["outcome"] == "synced"
    # One contact/sync and two tags per record: no job re-pushed a record another was tagging.
    assert ac_writes(activecampaign, "POST", "/contact/sync") == 2
    assert ac_writes(activecampaign, "POST", "/contactTags") == 4
    assert len(activecampaign.contacts()) == 2
    assert set(activecampaign.find_contact("burst@example.com")["tags"]) == {
        "D365: Lead", "D365: Pushed from Dynamics"}
