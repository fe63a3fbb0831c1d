"""RQ queues and the coalescing enqueue used by the webhook fast path.

A busy record can change many times a second (a user tabbing through a form,
a workflow touching it). Workers re-read the row from Dataverse anyway, so one
queued job per record is enough: ``rq:pending:<connection>:<entity>:<record>``
marks "a job for this record is queued and has not started yet", and further
changes are folded into it. The worker deletes the marker (``claim_record``)
when the job starts, *before* it reads the row, so a change made after that
read queues a fresh job and nothing is lost.
"""

from __future__ import annotations

import contextlib
import uuid

import redis
from rq import Callback, Queue, Retry

ACTIONS_QUEUE = "actions"  # user clicks (Add to Automation, Send Campaign)
REALTIME_QUEUE = "realtime"  # webhook-driven record syncs
BULK_QUEUE = "bulk"  # initial and scheduled syncs
QUEUE_NAMES: tuple[str, ...] = (ACTIONS_QUEUE, REALTIME_QUEUE, BULK_QUEUE)

SYNC_RECORD_FUNC = "workers.tasks.sync_record"
# Also runs when the work horse is killed (job timeout), where sync_record's own
# except block never does, so the ledger still shows the final failure.
SYNC_RECORD_FAILED_CALLBACK = "workers.tasks.sync_record_failed"

PENDING_TTL_SECONDS = 3600  # a lost worker cannot block a record for longer than this
SEEN_TTL_SECONDS = 24 * 3600  # Dataverse retries within seconds; a day is generous
SYNC_RESULT_TTL_SECONDS = 300
SYNC_FAILURE_TTL_SECONDS = 7 * 24 * 3600
SYNC_RETRY_INTERVALS = [2, 10, 30, 120, 600]


def get_queue(redis_client: redis.Redis, name: str) -> Queue:
    """The RQ queue ``name`` (one of ``QUEUE_NAMES``) on ``redis_client``."""
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; expected one of {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=redis_client)


def pending_key(connection_id: int, entity: str, record_id: str) -> str:
    return f"rq:pending:{connection_id}:{entity}:{record_id}"


def seen_key(org_id: str, operation_id: str, step_id: str | None) -> str:
    """The de-duplication key of one webhook delivery (OperationId + OwningExtension)."""
    return f"dv:seen:{org_id}:{operation_id}:{step_id or 'none'}"


def enqueue_record_sync(
    redis_client: redis.Redis, connection_id: int, entity: str, record_id: str, message: str
) -> bool:
    """Queue ``workers.tasks.sync_record`` for one record unless a job for it is already waiting.

    Returns True when a job was enqueued, False when the change was folded into
    the pending one. The ``message`` of a folded change is dropped, so the
    worker must decide from the re-read row (a row that is gone is a delete).
    If enqueueing fails the marker is removed again, so the next delivery (or
    Dataverse's retry) is not wrongly coalesced into a job that never existed.
    """
    key = pending_key(connection_id, entity, record_id)
    if not redis_client.set(key, 1, nx=True, ex=PENDING_TTL_SECONDS):
        return False
    try:
        get_queue(redis_client, REALTIME_QUEUE).enqueue_call(
            SYNC_RECORD_FUNC,
            kwargs={
                "connection_id": connection_id,
                "entity": entity,
                "record_id": record_id,
                "message": message,
            },
            job_id=f"sync-{connection_id}-{entity}-{record_id}-{uuid.uuid4().hex[:12]}",
            result_ttl=SYNC_RESULT_TTL_SECONDS,
            failure_ttl=SYNC_FAILURE_TTL_SECONDS,
            retry=Retry(max=len(SYNC_RETRY_INTERVALS), interval=SYNC_RETRY_INTERVALS),
            on_failure=Callback(SYNC_RECORD_FAILED_CALLBACK),
            description=f"sync {entity} {record_id} ({message}) for connection {connection_id}",
        )
    except BaseException:
        # The marker expires on its own if Redis is down; the original error matters more.
        with contextlib.suppress(redis.RedisError):
            redis_client.delete(key)
        raise
    return True


def claim_record(
    redis_client: redis.Redis, connection_id: int, entity: str, record_id: str
) -> None:
    """Mark the record's queued job as started: later changes must queue a new job.

    Call it at the start of ``sync_record``, before reading the row from Dataverse.
    """
    redis_client.delete(pending_key(connection_id, entity, record_id))
