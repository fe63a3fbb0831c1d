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


_queues: dict[tuple[int, str], Queue] = {}


def get_queue(redis_client: redis.Redis, name: str) -> Queue:
    """The RQ queue ``name`` (one of ``QUEUE_NAMES``) on ``redis_client``.

    Queue objects are kept per client: RQ caches the Redis server version on
    them, which would otherwise cost a round trip on every enqueue.
    """
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; expected one of {', '.join(QUEUE_NAMES)}")
    key = (id(redis_client), name)
    queue = _queues.get(key)
    if queue is None or queue.connection is not redis_client:
        queue = _queues[key] = Queue(name, connection=redis_client)
    return queue


def pending_key(connection_id: int, entity: str, record_id: str) -> str:
    return f"rq:pending:{connection_id}:{entity}:{record_id}"


def seen_key(org_id: str, operation_id: str, step_id: str | None) -> str:
    """The de-duplication key of one webhook delivery (OperationId + OwningExtension)."""
    return f"dv:seen:{org_id}:{operation_id}:{step_id or 'none'}"


# One round trip decides a webhook's fate: 0 = already seen (a re-delivery),
# 1 = folded into the job already waiting for this record, 2 = a job must be queued.
_ACCEPT_CHANGE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 2 end
return 1
"""


def _enqueue_sync_job(
    pipe: redis.client.Pipeline,
    redis_client: redis.Redis,
    connection_id: int,
    entity: str,
    record_id: str,
    message: str,
) -> None:
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
        pipeline=pipe,
    )


def _queue_with_marker(
    redis_client: redis.Redis,
    connection_id: int,
    entity: str,
    record_id: str,
    message: str,
    delivery_key: str | None = None,
) -> None:
    """Queue the job (and remember the delivery) in one transaction; on failure, free the
    record's marker so the next delivery is not folded into a job that never existed."""
    try:
        with redis_client.pipeline(transaction=True) as pipe:
            _enqueue_sync_job(pipe, redis_client, connection_id, entity, record_id, message)
            if delivery_key is not None:
                pipe.set(delivery_key, 1, ex=SEEN_TTL_SECONDS)
            pipe.execute()
    except BaseException:
        # The marker expires on its own if Redis is down; the original error matters more.
        with contextlib.suppress(redis.RedisError):
            redis_client.delete(pending_key(connection_id, entity, record_id))
        raise


def enqueue_record_sync(
    redis_client: redis.Redis, connection_id: int, entity: str, record_id: str, message: str
) -> bool:
    """Queue ``workers.tasks.sync_record`` for one record unless a job for it is already waiting.

    Returns True when a job was enqueued, False when the change was folded into
    the pending one. The ``message`` of a folded change is dropped, so the
    worker must decide from the re-read row (a row that is gone is a delete).
    """
    if not redis_client.set(
        pending_key(connection_id, entity, record_id), 1, nx=True, ex=PENDING_TTL_SECONDS
    ):
        return False
    _queue_with_marker(redis_client, connection_id, entity, record_id, message)
    return True


def accept_webhook_change(
    redis_client: redis.Redis,
    delivery_key: str,
    connection_id: int,
    entity: str,
    record_id: str,
    message: str,
) -> str:
    """The webhook fast path: ``"duplicate"``, ``"coalesced"`` or ``"queued"``.

    Two round trips for a new change (a script, then one transaction that
    queues the job *and* remembers the delivery), so a re-delivery can never
    be remembered without its job having been queued.
    """
    verdict = redis_client.eval(
        _ACCEPT_CHANGE,
        2,
        delivery_key,
        pending_key(connection_id, entity, record_id),
        PENDING_TTL_SECONDS,
    )
    if verdict == 0:
        return "duplicate"
    if verdict == 1:
        redis_client.set(delivery_key, 1, ex=SEEN_TTL_SECONDS)
        return "coalesced"
    _queue_with_marker(redis_client, connection_id, entity, record_id, message, delivery_key)
    return "queued"


def claim_record(
    redis_client: redis.Redis, connection_id: int, entity: str, record_id: str
) -> None:
    """Mark the record's queued job as started: later changes must queue a new job.

    Call it at the start of ``sync_record``, before reading the row from Dataverse.
    """
    redis_client.delete(pending_key(connection_id, entity, record_id))


# --- ActiveCampaign → Dynamics ----------------------------------------------------------

PULL_CONTACT_FUNC = "workers.tasks.pull_contact"
PULL_CONTACT_FAILED_CALLBACK = "workers.tasks.pull_contact_failed"
INBOUND_KINDS = ("update", "subscribe", "unsubscribe", "create:lead", "create:contact")


def inbound_pending_key(connection_id: int, kind: str, ac_contact_id: str) -> str:
    return f"rq:pending-in:{connection_id}:{kind}:{ac_contact_id}"


def enqueue_contact_pull(
    redis_client: redis.Redis, connection_id: int, ac_contact_id: str, kind: str, message: str
) -> bool:
    """Queue ``workers.tasks.pull_contact`` unless one for this contact and kind is waiting.

    ActiveCampaign delivers "at least once" and the worker re-reads the contact,
    so further deliveries while a job waits are folded into it. Returns True
    when a job was queued.
    """
    if kind not in INBOUND_KINDS:
        raise ValueError(f"unknown inbound kind {kind!r}")
    marker = inbound_pending_key(connection_id, kind, ac_contact_id)
    if not redis_client.set(marker, 1, nx=True, ex=PENDING_TTL_SECONDS):
        return False
    try:
        with redis_client.pipeline(transaction=True) as pipe:
            get_queue(redis_client, REALTIME_QUEUE).enqueue_call(
                PULL_CONTACT_FUNC,
                kwargs={"connection_id": connection_id, "ac_contact_id": str(ac_contact_id),
                        "kind": kind, "message": message},
                job_id=f"pull-{connection_id}-{ac_contact_id}-{uuid.uuid4().hex[:12]}",
                result_ttl=SYNC_RESULT_TTL_SECONDS,
                failure_ttl=SYNC_FAILURE_TTL_SECONDS,
                retry=Retry(max=len(SYNC_RETRY_INTERVALS), interval=SYNC_RETRY_INTERVALS),
                on_failure=Callback(PULL_CONTACT_FAILED_CALLBACK),
                description=f"pull ActiveCampaign contact {ac_contact_id} ({message}) "
                            f"for connection {connection_id}",
                pipeline=pipe,
            )
            pipe.execute()
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            redis_client.delete(marker)
        raise
    return True


def claim_contact_pull(
    redis_client: redis.Redis, connection_id: int, kind: str, ac_contact_id: str
) -> None:
    """The pull job started: a later delivery must queue a new job (see ``claim_record``)."""
    redis_client.delete(inbound_pending_key(connection_id, kind, ac_contact_id))


# A Dynamics push settles these before it writes the contact (``workers.sync``).
FIELD_PULL_KINDS = ("update", "subscribe", "unsubscribe")


def pending_contact_pulls(
    redis_client: redis.Redis, connection_id: int, ac_contact_id: str
) -> list[str]:
    """The kinds of this contact's field pulls that are queued and not started (one round trip).

    A push of a record linked to the contact asks under the record's lock, settles such
    a pull itself, then claims it (``claim_contact_pull``): a delivery folded into the
    queued job meanwhile is not lost, as that job still runs (harmless when nothing is left).
    """
    with redis_client.pipeline(transaction=False) as pipe:
        for kind in FIELD_PULL_KINDS:
            pipe.exists(inbound_pending_key(connection_id, kind, ac_contact_id))
        waiting = pipe.execute()
    return [kind for kind, found in zip(FIELD_PULL_KINDS, waiting, strict=True) if found]
