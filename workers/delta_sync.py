"""The scheduled sync: Dataverse change tracking, the safety net under the webhooks.

Per connection and table, ``SyncCheckpoint.delta_token`` remembers where the
last run stopped. A run reads the changes since then (``Prefer:
odata.track-changes``): changed rows and deletions are enqueued for the
real-time engine (``push_record`` re-reads, judges and pushes each; a deleted
row is unlinked and loses its D365 tags), and only then is the new token saved
— a crash before that re-reads the same changes, which coalescing and the
ledger hash make harmless.

Without a token (the first run) or with an expired one (Dataverse keeps them
~90 days), the run does a full reconciliation instead: every row is read,
pushed in bulk where the ledger's hash differs (so an in-sync table costs no
ActiveCampaign request), and links whose row no longer exists are unlinked.

The scheduler's tick (``enqueue_due``) queues a run for every connection whose
last one is older than its ``sync_frequency_hours``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from rq import Retry
from sqlalchemy import select

from bridge.clients import (
    ActiveCampaignError,
    DataverseError,
    activecampaign_client,
    dataverse_client,
)
from bridge.mapping import record_id
from bridge.models import Connection, RecordLink, SyncCheckpoint, SyncRun, utcnow
from bridge.queueing import BULK_QUEUE, enqueue_contact_pull, enqueue_record_sync, get_queue
from bridge.runtime import Runtime
from workers.bulk import bulk_limiter, push_rows, write_links
from workers.initial_sync import ENTITY_ORDER, Lease
from workers.setup import ConfigurationError, load_entity_setup

log = logging.getLogger(__name__)

KIND = "scheduled"
TASK = "workers.tasks.delta_sync"
BULK_THRESHOLD = 200  # more changed rows than this go out in bulk imports
RECONCILE_PAGE = 5000
# ActiveCampaign's updated_after is inclusive at one-second resolution; a little overlap
# costs a re-check (the ledger's pulled hash makes it free of writes) and never misses one.
POLL_OVERLAP = dt.timedelta(seconds=5)
EXPIRED_CODE = "0x80044352"  # "Version stamp associated with the client has expired"


def is_expired_token_error(exc: DataverseError) -> bool:
    text = f"{exc.code} {exc.message}".lower()
    return exc.status == 400 and (
        EXPIRED_CODE in text or "expired" in text or "full sync" in text
    )


# --- scheduling -----------------------------------------------------------------------


def enqueue_delta_sync(runtime: Runtime, connection_id: int) -> int | None:
    """Queue a scheduled sync unless one is already queued or running; the run id."""
    with runtime.db.session() as session:
        active = session.scalar(
            select(SyncRun.id).where(
                SyncRun.connection_id == connection_id, SyncRun.kind == KIND,
                SyncRun.status.in_(("queued", "running")),
                SyncRun.started_at > utcnow() - dt.timedelta(hours=6),
            )
        )
        if active is not None:
            return None
        run = SyncRun(connection_id=connection_id, kind=KIND, status="queued")
        session.add(run)
        session.flush()
        run_id = run.id
    get_queue(runtime.redis, BULK_QUEUE).enqueue_call(
        TASK,
        kwargs={"connection_id": connection_id, "run_id": run_id},
        timeout=6 * 3600,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=3, interval=[30, 300, 1800]),
        description=f"scheduled sync of connection {connection_id} (run {run_id})",
    )
    return run_id


def enqueue_due(runtime: Runtime, now: dt.datetime | None = None) -> list[int]:
    """Scheduler tick: queue the connections whose scheduled sync is due; their ids."""
    now = now or utcnow()
    due: list[int] = []
    with runtime.db.session() as session:
        connections = session.execute(
            select(Connection.id, Connection.sync_frequency_hours).where(
                Connection.global_sync_enabled.is_(True),
                Connection.initial_sync_status == "done",
                Connection.ac_api_key_encrypted.is_not(None),
            )
        ).all()
        for connection_id, hours in connections:
            last = session.scalar(
                select(SyncRun.started_at)
                .where(SyncRun.connection_id == connection_id, SyncRun.kind == KIND)
                .order_by(SyncRun.started_at.desc())
                .limit(1)
            )
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=dt.UTC)
            if last is None or now - last >= dt.timedelta(hours=max(int(hours or 1), 1)):
                due.append(connection_id)
    return [cid for cid in due if enqueue_delta_sync(runtime, cid) is not None]


# --- the run --------------------------------------------------------------------------


def _checkpoint(runtime: Runtime, connection_id: int, entity: str) -> str | None:
    with runtime.db.session() as session:
        row = session.scalar(
            select(SyncCheckpoint).where(
                SyncCheckpoint.connection_id == connection_id, SyncCheckpoint.entity == entity
            )
        )
        return row.delta_token if row else None


def _save_checkpoint(session, connection_id: int, entity: str, token: str | None) -> None:
    row = session.scalar(
        select(SyncCheckpoint).where(
            SyncCheckpoint.connection_id == connection_id, SyncCheckpoint.entity == entity
        )
    )
    if row is None:
        row = SyncCheckpoint(connection_id=connection_id, entity=entity)
        session.add(row)
    row.delta_token = token
    row.last_run_at = utcnow()


def _finish(runtime: Runtime, run_id: int | None, status: str, counts: dict[str, int],
            error: str | None = None) -> None:
    if run_id is None:
        return
    with runtime.db.session() as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return
        run.status = status
        run.error = error
        run.records_total = counts.get("total", 0)
        run.records_done = counts.get("done", 0)
        run.records_failed = counts.get("failed", 0)
        run.finished_at = utcnow()


def run_delta_sync(
    runtime: Runtime, connection_id: int, run_id: int | None = None
) -> dict[str, Any]:
    """One scheduled sync of the connection's enabled tables; a summary per table."""
    lease = Lease(runtime.redis, f"bridge:sync-lease:{KIND}:{connection_id}")
    if not lease.acquire():
        _finish(runtime, run_id, "skipped", {}, "another scheduled sync is running")
        return {"status": "already running"}
    try:
        return _run(runtime, connection_id, run_id)
    finally:
        lease.release()


def _run(runtime: Runtime, connection_id: int, run_id: int | None) -> dict[str, Any]:
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return {"status": "gone"}
        session.expunge(connection)
        if run_id is not None and (run := session.get(SyncRun, run_id)) is not None:
            run.status = "running"
            run.started_at = utcnow()
    if not connection.global_sync_enabled:
        _finish(runtime, run_id, "paused", {}, "global sync is off")
        return {"status": "paused"}
    summary: dict[str, Any] = {"status": "done"}
    counts = {"total": 0, "done": 0, "failed": 0}
    try:
        ac = activecampaign_client(runtime, connection)
        dv = dataverse_client(runtime, connection)
        for entity in ENTITY_ORDER:
            setup = load_entity_setup(runtime, connection_id, entity, dv, ac)
            if not setup.enabled:
                continue
            result = _sync_table(runtime, connection, setup, dv, ac)
            result["polled"] = poll_activecampaign(runtime, connection.id, setup, ac)
            summary[entity] = result
            counts["total"] += result["changed"] + result["deleted"]
            counts["done"] += result["changed"] + result["deleted"] - result.get("failed", 0)
            counts["failed"] += result.get("failed", 0)
    except LookupError:
        _finish(runtime, run_id, "failed", counts, "ActiveCampaign is not connected")
        return {"status": "failed"}
    except ConfigurationError as exc:
        _finish(runtime, run_id, "failed", counts, str(exc))
        return {"status": "failed", "error": str(exc)}
    except (ActiveCampaignError, DataverseError) as exc:
        if exc.transient:
            _finish(runtime, run_id, "queued", counts, exc.message)
            raise
        _finish(runtime, run_id, "failed", counts, exc.message)
        return {"status": "failed", "error": exc.message}
    _finish(runtime, run_id, "done", counts)
    return summary


def _ac_cursor(runtime: Runtime, connection_id: int, entity: str) -> str | None:
    with runtime.db.session() as session:
        row = session.scalar(
            select(SyncCheckpoint).where(
                SyncCheckpoint.connection_id == connection_id, SyncCheckpoint.entity == entity
            )
        )
        return row.ac_updated_after if row else None


def _save_ac_cursor(runtime: Runtime, connection_id: int, entity: str, cursor: str) -> None:
    with runtime.db.session() as session:
        row = session.scalar(
            select(SyncCheckpoint).where(
                SyncCheckpoint.connection_id == connection_id, SyncCheckpoint.entity == entity
            )
        )
        if row is None:
            row = SyncCheckpoint(connection_id=connection_id, entity=entity)
            session.add(row)
        row.ac_updated_after = cursor


def poll_activecampaign(runtime: Runtime, connection_id: int, setup, ac) -> int:
    """Queue a pull for every contact with this table's D365 tag changed since the cursor.

    The account webhook leaves out changes made through the API (other integrations):
    this poll of ``contacts?filters[updated_after]=`` picks them up. The first run only
    sets the cursor (the initial sync made Dynamics the reference). The cursor moves on
    only after the pulls are queued; a run while global sync is off never gets here, so
    what changed meanwhile is pulled once sync is back on. Returns how many were queued.
    """
    entity = setup.entity
    started = dt.datetime.now(dt.UTC) - POLL_OVERLAP
    cursor = _ac_cursor(runtime, connection_id, entity)
    queued = 0
    if cursor is not None:
        tag_id = ac.tag_id(setup.info.tag)
        if tag_id:
            params = {"filters[updated_after]": cursor, "tagid": tag_id}
            for contact in ac.paginate("contacts", "contacts", params):
                if contact.get("id"):
                    queued += enqueue_contact_pull(
                        runtime.redis, connection_id, str(contact["id"]), "update",
                        "Scheduled sync (changed in ActiveCampaign)",
                    )
    _save_ac_cursor(runtime, connection_id, entity, started.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    return queued


def _sync_table(runtime: Runtime, connection: Connection, setup, dv, ac) -> dict[str, Any]:
    entity, info = setup.entity, setup.info
    token = _checkpoint(runtime, connection.id, entity)
    mode = "delta"
    if token:
        try:
            rows, new_token = dv.changes(info.entity_set, setup.select, token)
        except DataverseError as exc:
            if not is_expired_token_error(exc):
                raise
            log.warning("delta token of %s for connection %s expired; reconciling in full",
                        entity, connection.id)
            token = None
    if not token:
        mode = "reconcile"
        rows, new_token = dv.changes(info.entity_set, setup.select, None)

    changed = [r for r in rows if r.get("reason") != "deleted" and record_id(entity, r)]
    deleted = [str(r.get("id")).strip("{}").lower() for r in rows if r.get("reason") == "deleted"]
    failed = 0
    if mode == "reconcile":
        present = {record_id(entity, r) for r in changed}
        with runtime.db.session() as session:
            linked = session.scalars(
                select(RecordLink.dynamics_id).where(
                    RecordLink.connection_id == connection.id, RecordLink.entity == entity
                )
            ).all()
        deleted += [rid for rid in linked if rid not in present]

    if mode == "reconcile" or len(changed) > BULK_THRESHOLD:
        limiter = bulk_limiter(runtime, ac.api_url)
        for start in range(0, len(changed), RECONCILE_PAGE):
            result = push_rows(
                runtime, connection.id, setup, changed[start : start + RECONCILE_PAGE], ac,
                bool(connection.exclude_automations_on_import), limiter,
            )
            write_links(runtime, connection.id, entity, result.writes)
            failed += result.failed
    else:
        for row in changed:
            enqueue_record_sync(runtime.redis, connection.id, entity,
                                record_id(entity, row), "Scheduled sync")
    for rid in deleted:
        enqueue_record_sync(runtime.redis, connection.id, entity, rid, "Delete")
    # Only now that every change is pushed or queued may the token move on.
    with runtime.db.session() as session:
        _save_checkpoint(session, connection.id, entity, new_token)
    log.info("scheduled sync of %s for connection %s (%s): %d changed, %d deleted",
             entity, connection.id, mode, len(changed), len(deleted))
    return {"mode": mode, "changed": len(changed), "deleted": len(deleted), "failed": failed}
