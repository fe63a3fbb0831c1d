"""Starting a sales action: validate, de-duplicate retries, log it, queue the job.

The web view only parses the request and authorizes the caller; everything a
new action needs happens here, in one plain function that returns the action's
id and status (an existing action's, when a retried request is replayed).
"""

from __future__ import annotations

from rq import Callback, Retry
from sqlalchemy import select

from bridge.actions import (
    ADD_TO_AUTOMATION,
    IDEMPOTENCY_SECONDS,
    MAX_RECORDS,
    SEND_CAMPAIGN,
    ActionStatus,
    RecordStatus,
    find_target,
    idempotency_key,
    normalise_record_ids,
    now_iso,
    request_fingerprint,
)
from bridge.auth import DynamicsUser
from bridge.clients import ActiveCampaignClient, ActiveCampaignError
from bridge.errors import ApiError
from bridge.models import ActionLog, Connection
from bridge.queueing import ACTIONS_QUEUE, get_queue
from bridge.runtime import Runtime

RUN_ACTION_FUNC = "workers.tasks.run_action"
RUN_ACTION_FAILED_CALLBACK = "workers.tasks.run_action_failed"
ACTION_RESULT_TTL_SECONDS = 3600


def _validated_ids(raw_ids: list[str]) -> list[str]:
    if len(raw_ids) == 0:
        raise ApiError(422, "invalid_request", "Choose at least one record.",
                       fields={"record_ids": ["at least one record id is required"]})
    if len(raw_ids) > MAX_RECORDS:
        raise ApiError(
            422, "too_many_records",
            f"At most {MAX_RECORDS} records per action ({len(raw_ids)} were sent).",
            fields={"record_ids": [f"at most {MAX_RECORDS} record ids"]},
        )
    record_ids, problems = normalise_record_ids(raw_ids)
    if problems:
        raise ApiError(422, "invalid_record_ids", "Some record ids are not valid.",
                       fields={"record_ids": problems})
    return record_ids


def _checked_target(runtime: Runtime, connection: Connection, ac: ActiveCampaignClient,
                    action: str, target_id: str, failure) -> dict:
    try:
        target = find_target(runtime.redis, connection.id, ac, action, target_id)
    except ActiveCampaignError as exc:
        raise failure(exc) from None
    kind = "automation" if action == ADD_TO_AUTOMATION else "campaign"
    if target is None:
        raise ApiError(
            422, f"unknown_{kind}", f"There is no {kind} {target_id} in ActiveCampaign.",
            fields={f"{kind}_id": [f"unknown {kind}"]},
        )
    if action == ADD_TO_AUTOMATION and not target["active"]:
        raise ApiError(422, "automation_inactive",
                       f"The automation '{target['name']}' is not active.",
                       fields={"automation_id": ["inactive automation"]})
    if action == SEND_CAMPAIGN and not target["sendable"]:
        raise ApiError(422, "campaign_not_sendable",
                       f"The campaign '{target['name']}' ({target['status']}) cannot be sent "
                       "to one contact.", fields={"campaign_id": ["not sendable"]})
    return target


def _delete_action(runtime: Runtime, action_id: int) -> None:
    with runtime.db.session() as session:
        row = session.get(ActionLog, action_id)
        if row is not None:
            session.delete(row)


def _replay(runtime: Runtime, redis_key: str, fingerprint: str,
            connection_id: int) -> tuple[int, str] | None:
    """The action a retried request (same Idempotency-Key) already started, if any."""
    raw = runtime.redis.get(redis_key)
    if not raw:
        return None
    action_id, _, stored = raw.decode().partition(":")
    if stored != fingerprint:
        raise ApiError(
            422, "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request.",
        )
    with runtime.db.session() as session:
        row = session.scalar(
            select(ActionLog).where(
                ActionLog.id == int(action_id), ActionLog.connection_id == connection_id
            )
        )
        return (row.id, row.status) if row is not None else None


def start_action(
    runtime: Runtime,
    *,
    user: DynamicsUser,
    connection: Connection,
    ac: ActiveCampaignClient,
    action: str,
    entity: str,
    raw_record_ids: list[str],
    target_id: str,
    client_key: str,
    activecampaign_failure,
) -> tuple[int, str]:
    """Start (or replay) one sales action; returns ``(action_id, status)``.

    ``client_key`` is the caller's Idempotency-Key ("" for none);
    ``activecampaign_failure`` turns an ActiveCampaign error into the ApiError to answer.
    """
    record_ids = _validated_ids(raw_record_ids)
    if not connection.global_sync_enabled:
        raise ApiError(
            409, "sync_paused",
            "Sync to ActiveCampaign is turned off by an administrator, so actions cannot run.",
        )
    fingerprint = request_fingerprint(action, entity, record_ids, target_id)
    redis_key = (
        idempotency_key(connection.id, user.systemuser_id, client_key[:200])
        if client_key else None
    )
    if redis_key:
        existing = _replay(runtime, redis_key, fingerprint, connection.id)
        if existing is not None:
            return existing

    target = _checked_target(runtime, connection, ac, action, target_id, activecampaign_failure)
    stamp = now_iso()
    with runtime.db.session() as session:
        row = ActionLog(
            connection_id=connection.id,
            action=action,
            target_id=target_id,
            target_name=target["name"][:300],
            entity=entity,
            record_ids=record_ids,
            user_systemuser_id=user.systemuser_id,
            user_name=user.name[:200],
            status=ActionStatus.QUEUED,
            results={
                rid: {"status": RecordStatus.QUEUED, "detail": "", "updated_at": stamp}
                for rid in record_ids
            },
        )
        session.add(row)
        session.flush()
        action_id = row.id

    if redis_key and not runtime.redis.set(
        redis_key, f"{action_id}:{fingerprint}", nx=True, ex=IDEMPOTENCY_SECONDS
    ):
        _delete_action(runtime, action_id)  # a concurrent retry won the race
        existing = _replay(runtime, redis_key, fingerprint, connection.id)
        if existing is not None:
            return existing
    try:
        get_queue(runtime.redis, ACTIONS_QUEUE).enqueue_call(
            RUN_ACTION_FUNC,
            kwargs={"action_id": action_id},
            job_id=f"action-{action_id}",
            timeout=120 + 20 * len(record_ids),
            result_ttl=ACTION_RESULT_TTL_SECONDS,
            retry=Retry(max=2, interval=[5, 30]),
            on_failure=Callback(RUN_ACTION_FAILED_CALLBACK),
            description=f"{action} {target_id} for {len(record_ids)} {entity}(s)",
        )
    except BaseException:
        if redis_key:
            runtime.redis.delete(redis_key)
        _delete_action(runtime, action_id)
        raise
    return action_id, ActionStatus.QUEUED
