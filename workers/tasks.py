"""RQ entry points: thin wrappers that fetch the process runtime and call plain functions.

Jobs are enqueued by dotted name (``workers.tasks.sync_record``), so these
signatures are a contract with ``bridge.queueing``: keep arguments JSON-simple.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import get_current_job

from bridge.runtime import get_runtime
from workers import backlog, scheduled
from workers import delta_sync as delta
from workers import initial_sync as initial
from workers.sync import push_record, readable_error, record_final_failure

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
        backlog.maybe_drain(runtime)  # under a backlog, first move a batch out in bulk
        outcome = push_record(runtime, connection_id, entity, record_id)
        if outcome.outcome == "synced":  # tags/fields changed: drop the cached timeline
            from bridge.actions import contact_changed

            contact_changed(runtime.redis, connection_id, outcome.ac_contact_id)
        return outcome.as_dict()
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


def run_action(action_id: int) -> dict[str, Any]:
    """Run one sales action (Add to Automation, Send Campaign); see ``workers.actions``."""
    from workers.actions import run_action as run

    return run(get_runtime(), action_id)


def run_action_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ ``on_failure`` callback: the job died (timeout, crash); finish the action's log row."""
    if job.should_retry:
        return
    from workers.actions import fail_unfinished

    action_id = (job.kwargs or {}).get("action_id") or (job.args or [None])[0]
    if action_id is not None:
        fail_unfinished(get_runtime(), int(action_id), "the worker stopped before this record")


def initial_sync(connection_id: int, run_id: int) -> dict[str, Any]:
    """Run (or resume) an initial sync; the last failed retry marks the run failed."""
    runtime = get_runtime()
    try:
        return initial.run_initial_sync(runtime, connection_id, run_id)
    except Exception as exc:
        job = get_current_job()
        if job is None or not job.should_retry:
            initial.record_failure(runtime, run_id, readable_error(exc))
        raise


def resume_syncs() -> int:
    """Scheduler entry point: resume initial syncs whose worker died, start first ones."""
    return initial.resume_stalled(get_runtime())


def delta_sync(connection_id: int, run_id: int | None = None) -> dict[str, Any]:
    """One scheduled (change-tracking) sync of a connection."""
    return delta.run_delta_sync(get_runtime(), connection_id, run_id)


def enqueue_due_syncs() -> list[int]:
    """Scheduler entry point: queue the scheduled syncs that are due."""
    return delta.enqueue_due(get_runtime())


def pull_contact(
    connection_id: int, ac_contact_id: str, kind: str = "update", message: str | None = None
) -> dict[str, Any]:
    """Pull one ActiveCampaign contact into Dynamics (``message`` is informative only)."""
    from workers.inbound import pull_contact as pull

    return pull(get_runtime(), connection_id, ac_contact_id, kind, message)


def pull_contact_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ ``on_failure`` callback: the last retry of a pull failed; say so in the log."""
    if job.should_retry:
        return
    log.warning("pull of ActiveCampaign contact %s failed for good: %s",
                (job.kwargs or {}).get("ac_contact_id"), readable_error(exc_value))
