"""The initial sync: every matching lead and contact pushed with bulk import, resumably.

Cost for N rows: about N/5000 Dataverse reads (5000-row pages, criteria as
``$filter``, only mapped columns in ``$select``) and about 2·N/250
ActiveCampaign requests (one import and one ``import/info`` per 250 contacts).

Progress lives in the ``SyncRun`` row: ``records_total/done/failed`` and
``checkpoint`` = JSON ``{"entity", "next_link", "page_size"}``, where
``next_link`` is Dataverse's ``@odata.nextLink`` (the paging cookie) of the
next page to read. A page's ledger rows and the new checkpoint are committed in
one transaction after ActiveCampaign confirmed the page, so a worker killed at
any point resumes at the first unconfirmed page; re-importing a page is an
upsert by email, so nothing is duplicated.

One run per connection at a time: the job holds a Redis lease it renews every
few seconds. A dead worker's lease expires, and the scheduler's tick
(``resume_stalled``) enqueues the run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from typing import Any

from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select

from bridge.clients import (
    ActiveCampaignError,
    DataverseError,
    activecampaign_client,
    dataverse_client,
)
from bridge.mapping import ENTITIES
from bridge.models import Connection, SyncRun, utcnow
from bridge.queueing import BULK_QUEUE, get_queue
from bridge.runtime import Runtime
from workers.bulk import bulk_limiter, push_rows, write_links
from workers.setup import ConfigurationError, load_entity_setup

log = logging.getLogger(__name__)

KIND = "initial"
ENTITY_ORDER = ("lead", "contact")
PAGE_SIZE = 5000
LEASE_SECONDS = 15
ACTIVE = ("queued", "running", "paused")
TASK = "workers.tasks.initial_sync"
JOB_TIMEOUT_SECONDS = 24 * 3600


def lease_key(connection_id: int) -> str:
    return f"bridge:sync-lease:{KIND}:{connection_id}"


def job_key(run_id: int) -> str:
    return f"bridge:sync-job:{KIND}:{run_id}"


class Lease:
    """A Redis lease renewed by a thread while the sync runs (gone ≤15 s after a crash)."""

    def __init__(self, redis, key: str, ttl: int = LEASE_SECONDS) -> None:
        self.redis, self.key, self.ttl = redis, key, ttl
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()

    def acquire(self) -> bool:
        if not self.redis.set(self.key, self.token, nx=True, ex=self.ttl):
            return False
        threading.Thread(target=self._renew, daemon=True).start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 5):
            if self.redis.get(self.key) not in (self.token, self.token.encode()):
                return
            self.redis.expire(self.key, self.ttl)

    def release(self) -> None:
        self._stop.set()
        if self.redis.get(self.key) in (self.token, self.token.encode()):
            self.redis.delete(self.key)


# --- starting and watching ----------------------------------------------------------


def _enqueue(runtime: Runtime, connection_id: int, run_id: int) -> str:
    job_id = f"initial-sync-{run_id}-{uuid.uuid4().hex[:8]}"
    get_queue(runtime.redis, BULK_QUEUE).enqueue_call(
        TASK,
        kwargs={"connection_id": connection_id, "run_id": run_id},
        job_id=job_id,
        timeout=JOB_TIMEOUT_SECONDS,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=5, interval=[10, 30, 120, 600, 1800]),
        description=f"initial sync of connection {connection_id} (run {run_id})",
    )
    runtime.redis.set(job_key(run_id), job_id, ex=7 * 24 * 3600)
    return job_id


def start_initial_sync(
    runtime: Runtime, connection_id: int, page_size: int | None = None
) -> int:
    """Queue an initial sync on ``bulk`` (or return the run already under way); the run id.

    ``page_size`` defaults to the ``INITIAL_SYNC_PAGE_SIZE`` setting (5000, Dataverse's most):
    progress and resumption advance one page at a time.
    """
    page_size = page_size or runtime.settings.initial_sync_page_size
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise LookupError(f"no connection {connection_id}")
        active = session.scalar(
            select(SyncRun).where(
                SyncRun.connection_id == connection_id,
                SyncRun.kind == KIND,
                SyncRun.status.in_(ACTIVE),
            ).order_by(SyncRun.id.desc())
        )
        if active is not None:
            return active.id
        run = SyncRun(
            connection_id=connection_id, kind=KIND, status="queued",
            checkpoint=json.dumps({"entity": None, "next_link": None, "page_size": page_size}),
        )
        session.add(run)
        connection.initial_sync_status = "queued"
        session.flush()
        run_id = run.id
    _enqueue(runtime, connection_id, run_id)
    return run_id


def initial_sync_progress(runtime: Runtime, connection_id: int) -> dict[str, Any]:
    """What the admin page's progress bar shows for the latest initial sync."""
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        run = session.scalar(
            select(SyncRun)
            .where(SyncRun.connection_id == connection_id, SyncRun.kind == KIND)
            .order_by(SyncRun.id.desc())
        )
        status = connection.initial_sync_status if connection is not None else "never"
        if run is None:
            return {"run_id": None, "total": 0, "done": 0, "failed": 0, "rate_per_s": 0.0,
                    "eta_s": None, "status": status, "error": None}
        end = run.finished_at or utcnow()
        started = run.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=end.tzinfo)
        if end.tzinfo is None:
            end = end.replace(tzinfo=started.tzinfo)
        elapsed = max((end - started).total_seconds(), 0.001)
        processed = run.records_done + run.records_failed
        rate = processed / elapsed if processed else 0.0
        remaining = max(run.records_total - processed, 0)
        eta = 0.0 if run.status == "done" else (remaining / rate if rate else None)
        return {
            "run_id": run.id,
            "total": run.records_total,
            "done": run.records_done,
            "failed": run.records_failed,
            "rate_per_s": round(rate, 1),
            "eta_s": round(eta, 1) if eta is not None else None,
            "status": status if run.status != "paused" else "paused",
            "error": run.error,
        }


def resume_stalled(runtime: Runtime) -> int:
    """Scheduler tick: enqueue active runs whose worker died or that waited for global sync.

    A run needs a job when nobody holds its lease and its last job is not
    waiting in a queue. Also starts the first initial sync of a connection
    whose global sync is on and that never had one. Returns how many were enqueued.
    """
    enqueued = 0
    with runtime.db.session() as session:
        runs = session.execute(
            select(SyncRun.id, SyncRun.connection_id, Connection.global_sync_enabled)
            .join(Connection, Connection.id == SyncRun.connection_id)
            .where(SyncRun.kind == KIND, SyncRun.status.in_(ACTIVE))
        ).all()
        never = session.scalars(
            select(Connection.id).where(
                Connection.global_sync_enabled.is_(True),
                Connection.initial_sync_status == "never",
                Connection.ac_api_key_encrypted.is_not(None),
            )
        ).all()
    for run_id, connection_id, enabled in runs:
        if not enabled or runtime.redis.exists(lease_key(connection_id)):
            continue
        job_id = runtime.redis.get(job_key(run_id))
        if job_id:
            with contextlib.suppress(NoSuchJobError):
                job = Job.fetch(job_id.decode(), connection=runtime.redis)
                if job.get_status(refresh=True) in ("queued", "scheduled", "deferred"):
                    continue
        log.info("initial sync run %s of connection %s has no live worker; resuming",
                 run_id, connection_id)
        _enqueue(runtime, connection_id, run_id)
        enqueued += 1
    for connection_id in never:
        start_initial_sync(runtime, connection_id)
        enqueued += 1
    return enqueued


# --- the job ------------------------------------------------------------------------


def _count(dv, entity_set: str, key: str, odata_filter: str | None) -> int:
    params: dict[str, Any] = {"$select": key, "$count": "true"}
    if odata_filter:
        params["$filter"] = odata_filter
    body = dv.request("GET", entity_set, params=params,
                      headers={"Prefer": "odata.maxpagesize=1"}).json()
    return int(body.get("@odata.count") or len(body.get("value") or []))


def _set_status(runtime: Runtime, run_id: int, status: str, connection_status: str,
                error: str | None = None, finished: bool = False) -> None:
    with runtime.db.session() as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return
        run.status = status
        run.error = error
        if finished:
            run.finished_at = utcnow()
        connection = session.get(Connection, run.connection_id)
        if connection is not None:
            connection.initial_sync_status = connection_status


def run_initial_sync(runtime: Runtime, connection_id: int, run_id: int) -> dict[str, Any]:
    """Do (or continue) the run; returns a summary. Transient errors propagate (RQ retries)."""
    lease = Lease(runtime.redis, lease_key(connection_id))
    if not lease.acquire():
        return {"run_id": run_id, "status": "already running"}
    try:
        return _run(runtime, connection_id, run_id)
    finally:
        lease.release()


def _run(runtime: Runtime, connection_id: int, run_id: int) -> dict[str, Any]:
    with runtime.db.session() as session:
        run = session.get(SyncRun, run_id)
        connection = session.get(Connection, connection_id)
        if run is None or connection is None:
            return {"run_id": run_id, "status": "gone"}
        if run.status not in ACTIVE:
            return {"run_id": run_id, "status": run.status}
        checkpoint = json.loads(run.checkpoint or "{}")
        needs_total = run.records_total == 0 and checkpoint.get("entity") is None
        exclude_automations = bool(connection.exclude_automations_on_import)
        session.expunge(connection)
    if not connection.global_sync_enabled:
        _set_status(runtime, run_id, "paused", "queued")
        return {"run_id": run_id, "status": "paused"}
    _set_status(runtime, run_id, "running", "running")
    page_size = int(checkpoint.get("page_size") or PAGE_SIZE)

    try:
        ac = activecampaign_client(runtime, connection)
        dv = dataverse_client(runtime, connection)
        setups = {
            entity: load_entity_setup(runtime, connection_id, entity, dv, ac)
            for entity in ENTITY_ORDER
        }
    except LookupError:
        _set_status(runtime, run_id, "failed", "failed", "ActiveCampaign is not connected", True)
        return {"run_id": run_id, "status": "failed"}
    except ConfigurationError as exc:
        _set_status(runtime, run_id, "failed", "failed", str(exc), True)
        return {"run_id": run_id, "status": "failed"}
    limiter = bulk_limiter(runtime, ac.api_url)

    try:
        if needs_total:
            total = sum(
                _count(dv, ENTITIES[e].entity_set, ENTITIES[e].primary_key,
                       setups[e].criteria.to_odata())
                for e in ENTITY_ORDER if setups[e].enabled
            )
            with runtime.db.session() as session:
                session.get(SyncRun, run_id).records_total = total

        order = list(ENTITY_ORDER)
        if checkpoint.get("entity") == "done":
            start = len(order)  # the last page was confirmed; only the status is missing
        else:
            start = order.index(checkpoint["entity"]) if checkpoint.get("entity") in order else 0
        next_link = checkpoint.get("next_link")
        for position in range(start, len(order)):
            entity = order[position]
            setup = setups[entity]
            if not setup.enabled:
                next_link = None
                continue
            info = setup.info
            while True:
                if not _still_enabled(runtime, connection_id):
                    _set_status(runtime, run_id, "paused", "queued")
                    return {"run_id": run_id, "status": "paused"}
                started = time.monotonic()
                rows, following = dv.query_page(
                    info.entity_set, select=setup.select, filter=setup.criteria.to_odata(),
                    page_size=page_size, next_link=next_link, annotations=setup.annotations,
                )
                result = push_rows(
                    runtime, connection_id, setup, rows, ac, exclude_automations, limiter
                )
                if following:
                    new_checkpoint = {"entity": entity, "next_link": following}
                elif position + 1 < len(order):
                    new_checkpoint = {"entity": order[position + 1], "next_link": None}
                else:
                    new_checkpoint = {"entity": "done", "next_link": None}
                new_checkpoint["page_size"] = page_size

                def advance(session, result=result, new_checkpoint=new_checkpoint):
                    run = session.get(SyncRun, run_id)
                    run.records_done += result.done
                    run.records_failed += result.failed
                    run.records_total = max(
                        run.records_total, run.records_done + run.records_failed
                    )
                    run.checkpoint = json.dumps(new_checkpoint)

                write_links(runtime, connection_id, entity, result.writes, extra=advance)
                log.info("initial sync %s: %s page of %d rows (%d pushed, %d failed) in %.1fs",
                         run_id, entity, len(rows), result.pushed, result.failed,
                         time.monotonic() - started)
                next_link = following
                if not following:
                    break
            next_link = None
    except (ActiveCampaignError, DataverseError) as exc:
        if exc.transient:
            raise
        _set_status(runtime, run_id, "failed", "failed", exc.message, True)
        return {"run_id": run_id, "status": "failed", "error": exc.message}

    _set_status(runtime, run_id, "done", "done", finished=True)
    with runtime.db.session() as session:
        run = session.get(SyncRun, run_id)
        return {"run_id": run_id, "status": "done", "total": run.records_total,
                "done": run.records_done, "failed": run.records_failed}


def _still_enabled(runtime: Runtime, connection_id: int) -> bool:
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        return bool(connection and connection.global_sync_enabled)


def record_failure(runtime: Runtime, run_id: int, message: str) -> None:
    """The last retry failed: the run and the connection show it."""
    _set_status(runtime, run_id, "failed", "failed", message, True)
