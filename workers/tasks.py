"""RQ entry points: thin wrappers that fetch the process runtime and call plain functions.

Jobs are enqueued by dotted name (``workers.tasks.sync_record``), so these
signatures are a contract with ``bridge.queueing``: keep arguments JSON-simple.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import get_current_job

from bridge.runtime import get_runtime
from workers import scheduled
from workers.sync import push_record, record_final_failure

log = logging.getLogger(__name__)


def sync_record(
    connection_id: int, entity: str, record_id: str, message: str | None = None
) -> dict[str, Any]:
    """Push one Dynamics row to ActiveCampaign (``message`` is informative only).

    Transient errors propagate so RQ retries with its backoff; when the last
    retry fails the readable error is written to the ledger before re-raising.
    """
    runtime = get_runtime()
    try:
        return push_record(runtime, connection_id, entity, record_id).as_dict()
    except Exception as exc:
        job = get_current_job()
        if job is None or not job.should_retry:
            record_final_failure(runtime, connection_id, entity, record_id, exc)
        raise


def sync_record_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ ``on_failure`` callback: the same ledger write, for jobs enqueued with it.

    RQ calls failure callbacks on every failed attempt; only the last one counts.
    """
    if job.should_retry:
        return
    kwargs = dict(job.kwargs or {})
    names = ("connection_id", "entity", "record_id")
    for name, value in zip(names, job.args or (), strict=False):
        kwargs.setdefault(name, value)
    if not all(name in kwargs for name in names):
        return
    record_final_failure(
        get_runtime(), kwargs["connection_id"], kwargs["entity"], kwargs["record_id"], exc_value
    )


def requeue_pending() -> int:
    """Scheduler entry point: re-enqueue links left ``pending`` (see ``workers.scheduled``)."""
    return scheduled.requeue_pending(get_runtime())
