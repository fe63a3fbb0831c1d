"""Periodic work the scheduler enqueues."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from bridge.models import Connection, LinkStatus, RecordLink, utcnow
from bridge.queueing import enqueue_record_sync
from bridge.runtime import Runtime


def requeue_pending(runtime: Runtime, older_than: dt.timedelta = dt.timedelta(minutes=1)) -> int:
    """Enqueue a sync for every pending record of a connection whose global sync is on.

    Records stay ``pending`` while global sync is off or when their job was
    lost; this is what makes "paused" mean "delayed", never "dropped".
    Returns how many jobs were enqueued (coalescing skips records already queued).
    """
    cutoff = utcnow() - older_than
    with runtime.db.session() as session:
        rows = session.execute(
            select(RecordLink.connection_id, RecordLink.entity, RecordLink.dynamics_id)
            .join(Connection)
            .where(
                Connection.global_sync_enabled.is_(True),
                RecordLink.status == LinkStatus.PENDING,
                RecordLink.updated_at < cutoff,
            )
            .limit(10_000)
        ).all()
    return sum(
        enqueue_record_sync(runtime.redis, connection_id, entity, record_id, "Repair")
        for connection_id, entity, record_id in rows
    )
