"""Backlog → bulk: when the real-time queue is long, its record syncs go out as bulk imports.

At 5 ActiveCampaign requests a second, one ``contact/sync`` (plus two tags for a
new contact) per record drains a backlog of thousands of records in tens of
minutes; bulk import moves 250 contacts in one request. So every ``sync_record``
job first looks at the ``realtime`` queue (one ``LLEN``); above
``BACKLOG_THRESHOLD`` waiting jobs, the one worker that wins the drain lock takes
up to ``DRAIN_BATCH`` queued record syncs off the queue (``LREM`` of each job id:
a job a worker already took is left to it), reads their rows from Dataverse in
``$filter`` batches and pushes them through ``workers.bulk.push_rows`` — the same
setup, criteria, mapping, ledger hash and confirmation as the initial sync.

Rows that are gone (deletes) and records another job holds are queued again as
ordinary syncs, so nothing taken off the queue is lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from typing import Any

from redis.exceptions import LockError
from rq.job import Job

from bridge.clients import activecampaign_client, dataverse_client
from bridge.mapping import entity_info, record_id
from bridge.models import Connection, LinkStatus
from bridge.queueing import (
    REALTIME_QUEUE,
    SYNC_RECORD_FUNC,
    claim_record,
    enqueue_record_sync,
    get_queue,
)
from bridge.runtime import Runtime
from workers.bulk import LinkWrite, bulk_limiter, push_rows, write_links
from workers.setup import ConfigurationError, load_entity_setup
from workers.sync import LOCK_SECONDS, lock_key

log = logging.getLogger(__name__)

BACKLOG_THRESHOLD = 250  # waiting real-time jobs above which the engine switches to bulk
DRAIN_BATCH = 1000  # record syncs taken off the queue per drain
FILTER_CHUNK = 50  # record ids per Dataverse $filter (keeps the URL short)
DRAIN_LOCK = "bridge:backlog:drain"
DRAIN_LOCK_SECONDS = 900
# A burst rarely arrives all at once (Dataverse delivers webhooks one by one), so once a
# drain has run, the tail of the burst keeps going out in bulk while more than
# BURST_TAIL_THRESHOLD syncs wait: ActiveCampaign advises bulk import above 10 contacts.
BURST_KEY = "bridge:backlog:burst"
BURST_SECONDS = 30
BURST_TAIL_THRESHOLD = 10


def maybe_drain(runtime: Runtime, threshold: int = BACKLOG_THRESHOLD) -> dict[str, Any] | None:
    """Drain the real-time backlog in bulk if it is long and no other worker is at it."""
    waiting = get_queue(runtime.redis, REALTIME_QUEUE).count
    in_burst = waiting > BURST_TAIL_THRESHOLD and runtime.redis.exists(BURST_KEY)
    if waiting <= threshold and not in_burst:
        return None
    lock = runtime.redis.lock(DRAIN_LOCK, timeout=DRAIN_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return None
    try:
        runtime.redis.set(BURST_KEY, 1, ex=BURST_SECONDS)
        return drain_backlog(runtime)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def take_sync_jobs(runtime: Runtime, limit: int = DRAIN_BATCH) -> dict[tuple[int, str], list[str]]:
    """Take up to ``limit`` queued record syncs off the real-time queue; (connection, table)
    → record ids. Each job is removed with ``LREM`` first, so one a worker has already
    popped is never taken twice."""
    queue = get_queue(runtime.redis, REALTIME_QUEUE)
    ids = [i for i in queue.get_job_ids(0, limit * 2 - 1) if i.startswith("sync-")][:limit]
    taken: dict[tuple[int, str], list[str]] = defaultdict(list)
    for job in Job.fetch_many(ids, connection=runtime.redis):
        if job is None or job.func_name != SYNC_RECORD_FUNC:
            continue
        if not runtime.redis.lrem(queue.key, 1, job.id):
            continue  # a worker took it meanwhile
        kwargs = job.kwargs or {}
        with contextlib.suppress(Exception):
            job.delete()
        taken[(int(kwargs["connection_id"]), str(kwargs["entity"]))].append(
            str(kwargs["record_id"]).strip("{}").lower()
        )
    return taken


def drain_backlog(runtime: Runtime, limit: int = DRAIN_BATCH) -> dict[str, Any]:
    taken = take_sync_jobs(runtime, limit)
    summary = {"taken": 0, "pushed": 0, "requeued": 0, "failed": 0}
    for (connection_id, entity), ids in taken.items():
        unique = list(dict.fromkeys(ids))
        summary["taken"] += len(unique)
        result = push_batch(runtime, connection_id, entity, unique)
        for key in ("pushed", "requeued", "failed"):
            summary[key] += result[key]
    log.info("backlog drained in bulk: %s", summary)
    return summary


def _odata_in(key: str, ids: list[str]) -> str:
    return " or ".join(f"{key} eq {rid}" for rid in ids)


def push_batch(
    runtime: Runtime, connection_id: int, entity: str, ids: list[str]
) -> dict[str, int]:
    """Push these records of one table with bulk import (the drained part of a backlog)."""
    result = {"pushed": 0, "requeued": 0, "failed": 0}

    def requeue(rids: list[str], why: str) -> None:
        for rid in rids:
            enqueue_record_sync(runtime.redis, connection_id, entity, rid, why)
        result["requeued"] += len(rids)

    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return result
        session.expunge(connection)
    if not connection.global_sync_enabled:
        write_links(runtime, connection_id, entity,
                    [LinkWrite(rid, LinkStatus.PENDING) for rid in ids])
        return result
    try:
        ac = activecampaign_client(runtime, connection)
        dv = dataverse_client(runtime, connection)
        setup = load_entity_setup(runtime, connection_id, entity, dv, ac)
    except (LookupError, ConfigurationError):
        requeue(ids, "Backlog")  # the real-time path records why, per record
        return result

    locks, mine, busy = [], [], []
    for rid in ids:
        lock = runtime.redis.lock(lock_key(connection_id, entity, rid), timeout=LOCK_SECONDS)
        if lock.acquire(blocking=False):
            locks.append(lock)
            mine.append(rid)
            claim_record(runtime.redis, connection_id, entity, rid)
        else:
            busy.append(rid)
    try:
        info = entity_info(entity)
        rows: list[dict] = []
        for start in range(0, len(mine), FILTER_CHUNK):
            chunk = mine[start : start + FILTER_CHUNK]
            page, _ = dv.query_page(info.entity_set, select=setup.select,
                                    filter=_odata_in(info.primary_key, chunk),
                                    page_size=len(chunk), annotations=setup.annotations)
            rows.extend(page)
        found = {record_id(entity, row) for row in rows}
        gone = [rid for rid in mine if rid not in found]
        pushed = push_rows(runtime, connection_id, setup, rows, ac, False,
                           bulk_limiter(runtime, ac.api_url))
        write_links(runtime, connection_id, entity, pushed.writes)
        result["pushed"] += pushed.pushed
        result["failed"] += pushed.failed
    except Exception:
        busy.extend(mine)  # nothing is lost: every taken record goes back on the queue
        gone = []
        raise
    finally:
        for lock in locks:
            with contextlib.suppress(LockError):
                lock.release()
        # Deleted rows are unlinked by the real-time engine; locked ones wait their turn.
        requeue(gone + busy, "Backlog")
    return result
