"""Backlog → bulk: a long real-time queue is drained with bulk imports, automatically."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from bridge.models import LinkStatus, RecordLink
from bridge.queueing import REALTIME_QUEUE, enqueue_record_sync, get_queue
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow

RECORDS = 400


def synced_links(runtime) -> int:
    with runtime.db.session() as session:
        return session.scalar(
            select(func.count())
            .select_from(RecordLink)
            .where(RecordLink.status == LinkStatus.SYNCED, RecordLink.ac_contact_id.is_not(None))
        )


def test_a_backlog_of_record_syncs_goes_out_in_bulk_imports(
    runtime, connection_id, dataverse, activecampaign, start_workers
):
    ids = [
        dataverse.create_record("lead", {"lastname": f"B{i}", "emailaddress1": f"b{i}@example.com"})
        for i in range(RECORDS)
    ]
    gone = ids.pop()  # one of them is deleted before its job runs
    dataverse.delete_record("lead", gone)
    for rid in [*ids, gone]:
        assert enqueue_record_sync(runtime.redis, connection_id, "lead", rid, "Create")
    assert get_queue(runtime.redis, REALTIME_QUEUE).count == RECORDS

    started = time.monotonic()
    start_workers(1, queues=("realtime",))
    wait_until(lambda: synced_links(runtime) == RECORDS - 1, timeout=50)
    elapsed = time.monotonic() - started

    log = activecampaign.request_log
    imports = [e for e in log if e["path"].endswith("/import/bulk_import") and e["status"] == 200]
    syncs = [e for e in log if e["path"].endswith("/contact/sync")]
    assert len(imports) >= 1
    # One-by-one, 399 new contacts cost ~1,200 requests (~4 minutes at 5/s); in bulk only
    # the jobs picked up before the switch (and the deleted row) go one by one.
    assert len(syncs) < 20, len(syncs)
    assert elapsed < 45
    contacts = activecampaign.contacts()
    assert len(contacts) == RECORDS - 1  # none lost, none duplicated
    assert all(set(c["tags"]) == {"D365: Lead", "D365: Pushed from Dynamics"} for c in contacts)
    wait_until(lambda: get_queue(runtime.redis, REALTIME_QUEUE).count == 0, timeout=20)


def test_the_tail_of_a_burst_keeps_going_out_in_bulk(
    runtime, connection_id, dataverse, activecampaign, start_workers
):
    """Dataverse delivers a burst one webhook at a time: records that arrive after the
    first drain (fewer than the threshold) still go in bulk while the burst lasts."""
    from workers.backlog import BURST_KEY

    runtime.redis.set(BURST_KEY, 1, ex=30)  # a drain has just run
    tail = [
        dataverse.create_record("lead", {"lastname": f"T{i}", "emailaddress1": f"t{i}@example.com"})
        for i in range(40)
    ]
    for rid in tail:
        assert enqueue_record_sync(runtime.redis, connection_id, "lead", rid, "Create")
    start_workers(1, queues=("realtime",))
    wait_until(lambda: synced_links(runtime) == len(tail), timeout=40)
    syncs = [e for e in activecampaign.request_log if e["path"].endswith("/contact/sync")]
    imports = [
        e
        for e in activecampaign.request_log
        if e["path"].endswith("/import/bulk_import") and e["status"] == 200
    ]
    assert imports and len(syncs) < 5, (len(imports), len(syncs))

    # Without a burst under way, a handful of changes go one by one, as usual.
    runtime.redis.delete(BURST_KEY)
    activecampaign.reset_log()
    rid = dataverse.create_record("lead", {"lastname": "Solo", "emailaddress1": "solo@example.com"})
    enqueue_record_sync(runtime.redis, connection_id, "lead", rid, "Create")
    wait_until(lambda: activecampaign.find_contact("solo@example.com"), timeout=20)
    assert not [e for e in activecampaign.request_log if e["path"].endswith("/import/bulk_import")]
