"""Sync Health: ledger counts, the failing records with their readable error, recent runs.

**Retry** queues the record again through the sync engine's real-time path
(``bridge.queueing.enqueue_record_sync``) and marks its link ``pending`` until a worker has
pushed it (it returns to ``failing`` with the new error if the push fails again).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bridge.errors import ApiError
from bridge.models import LinkStatus, RecordLink, SyncRun
from bridge.queueing import enqueue_record_sync
from bridge.runtime import Runtime

FAILING_LIMIT = 50
RUNS_LIMIT = 10


def read(runtime: Runtime, connection_id: int) -> dict[str, Any]:
    with runtime.db.session() as session:
        counts = dict.fromkeys(("synced", "excluded", "failing", "pending"), 0)
        for status, count in session.execute(
            select(RecordLink.status, func.count())
            .where(RecordLink.connection_id == connection_id)
            .group_by(RecordLink.status)
        ):
            if status in counts:
                counts[status] = count
        failing = [
            {
                "id": link.id,
                "entity": link.entity,
                "dynamics_id": link.dynamics_id,
                "email": link.email,
                "error": link.last_error or "no error recorded",
                "updated_at": link.updated_at,
            }
            for link in session.scalars(
                select(RecordLink)
                .where(
                    RecordLink.connection_id == connection_id,
                    RecordLink.status == LinkStatus.FAILING,
                )
                .order_by(RecordLink.updated_at.desc(), RecordLink.id.desc())
                .limit(FAILING_LIMIT)
            )
        ]
        runs = [
            {
                "id": run.id,
                "kind": run.kind,
                "status": run.status,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "records_total": run.records_total,
                "records_done": run.records_done,
                "records_failed": run.records_failed,
                "error": run.error,
            }
            for run in session.scalars(
                select(SyncRun)
                .where(SyncRun.connection_id == connection_id)
                .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
                .limit(RUNS_LIMIT)
            )
        ]
    return {"counts": counts, "failing": failing, "runs": runs}


def retry(runtime: Runtime, connection_id: int, link_id: int) -> dict[str, Any]:
    with runtime.db.session() as session:
        link = session.get(RecordLink, link_id)
        if link is None or link.connection_id != connection_id:
            raise ApiError(404, "not_found", "no such record in this organization's sync ledger")
        if link.status != LinkStatus.FAILING:
            raise ApiError(409, "not_failing", "this record is not failing any more")
        entity, record_id = link.entity, link.dynamics_id
        link.status = LinkStatus.PENDING
    enqueue_record_sync(runtime.redis, connection_id, entity, record_id, "retry from Sync Health")
    return {"id": link_id, "queued": True}
