"""Running one sales action (Add to Automation, Send Campaign) record by record.

``run_action(runtime, action_id)`` is what the RQ job on the ``actions`` queue
calls. For each record of the ``ActionLog`` row that is not final yet:

1. find the ActiveCampaign contact: the ledger when the record is synced,
   otherwise push the record first (``workers.sync.push_record``), which may
   say the record has no email or is excluded by the sync criteria;
2. add the contact to the automation (unless it is already in it), or send the
   campaign's message to it with v1 ``campaign_send`` (unless this campaign
   reached this contact through the bridge in the last few minutes);
3. write a note on the Dynamics record ("Added to automation 'Welcome series'
   by Jane Doe");
4. save the record's result in the action log, so the dialog shows progress.

Re-running the job (an RQ retry, a worker that died) skips records whose
result is final, and a per-record Redis marker set right after the
ActiveCampaign call keeps a retry from adding or sending twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import LockError
from sqlalchemy import select

from bridge.actions import (
    ADD_TO_AUTOMATION,
    CAMPAIGN_DEDUPE_SECONDS,
    ActionStatus,
    RecordStatus,
    contact_changed,
    describe_error,
    now_iso,
)
from bridge.clients import (
    ActiveCampaignClient,
    ActiveCampaignError,
    DataverseClient,
    DataverseError,
    activecampaign_client,
    dataverse_client,
)
from bridge.mapping import entity_info
from bridge.models import ActionLog, Connection, LinkStatus, RecordLink, utcnow
from bridge.runtime import Runtime
from workers.sync import Outcome, push_record

log = logging.getLogger(__name__)

MARKER_TTL_SECONDS = 7 * 24 * 3600
RECORD_ATTEMPTS = 3  # per record, on top of the client's own retries of 429/5xx
NOTE_SUBJECT = "ActiveCampaign"


@dataclass
class _Action:
    id: int
    connection_id: int
    action: str
    target_id: str
    target_name: str
    entity: str
    record_ids: list[str]
    user_name: str
    results: dict[str, dict]


class _Final(Exception):
    """A record reached a final state other than done (skipped, already, failed)."""

    def __init__(self, status: str, detail: str, ac_contact_id: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.ac_contact_id = ac_contact_id


def _load(runtime: Runtime, action_id: int) -> tuple[_Action | None, Connection | None]:
    with runtime.db.session() as session:
        row = session.get(ActionLog, action_id)
        if row is None:
            return None, None
        connection = session.get(Connection, row.connection_id)
        if connection is not None:
            session.expunge(connection)
        return (
            _Action(
                row.id, row.connection_id, row.action, row.target_id, row.target_name,
                row.entity, list(row.record_ids or []), row.user_name,
                {k: dict(v) for k, v in (row.results or {}).items()},
            ),
            connection,
        )


def _save(runtime: Runtime, action: _Action, status: str | None = None) -> None:
    with runtime.db.session() as session:
        row = session.get(ActionLog, action.id)
        if row is None:
            return
        row.results = {k: dict(v) for k, v in action.results.items()}
        if status is not None:
            row.status = status
            if status == ActionStatus.DONE:
                row.finished_at = utcnow()


def _set(action: _Action, record_id: str, status: str, detail: str = "",
         ac_contact_id: str | None = None) -> None:
    result = action.results.setdefault(record_id, {})
    result.update(status=status, detail=detail, updated_at=now_iso())
    if ac_contact_id:
        result["ac_contact_id"] = ac_contact_id


def _marker(action: _Action, record_id: str) -> str:
    return f"action:{action.id}:done:{record_id}"


# --- finding the contact --------------------------------------------------------------------


def _linked_contact(runtime: Runtime, action: _Action, record_id: str) -> tuple[str, str] | None:
    with runtime.db.session() as session:
        link = session.scalar(
            select(RecordLink).where(
                RecordLink.connection_id == action.connection_id,
                RecordLink.entity == action.entity,
                RecordLink.dynamics_id == record_id,
            )
        )
        if link and link.ac_contact_id and link.email and link.status == LinkStatus.SYNCED:
            return link.ac_contact_id, link.email
    return None


def _contact_for(runtime: Runtime, action: _Action, record_id: str) -> tuple[str, str]:
    """(contact id, email), syncing the record first when it is not linked yet."""
    linked = _linked_contact(runtime, action, record_id)
    if linked:
        return linked
    outcome = push_record(runtime, action.connection_id, action.entity, record_id)
    if outcome.outcome in (Outcome.SYNCED, Outcome.UNCHANGED):
        linked = _linked_contact(runtime, action, record_id)
        if linked:
            return linked
        raise _Final(RecordStatus.FAILED, "the record could not be linked to a contact")
    if outcome.outcome == Outcome.EXCLUDED:
        from workers.setup import NO_EMAIL

        if (outcome.error or "") == NO_EMAIL:
            raise _Final(RecordStatus.SKIPPED_NO_EMAIL, "the record has no email address")
        raise _Final(
            RecordStatus.SKIPPED_EXCLUDED,
            f"excluded from sync: {outcome.error}" if outcome.error else "excluded by the "
            "sync criteria",
        )
    reasons = {
        Outcome.UNLINKED: "the record no longer exists in Dynamics",
        Outcome.PAUSED: "sync to ActiveCampaign is turned off by an administrator",
        Outcome.NOT_CONNECTED: "ActiveCampaign is not connected",
        Outcome.SKIPPED: "the connection no longer exists",
    }
    raise _Final(
        RecordStatus.FAILED,
        reasons.get(outcome.outcome) or outcome.error or f"sync failed ({outcome.outcome})",
    )


# --- the ActiveCampaign step ----------------------------------------------------------------


def _add_to_automation(
    runtime: Runtime, ac: ActiveCampaignClient, action: _Action, contact_id: str
) -> None:
    lock = runtime.redis.lock(
        f"lock:ac:automation:{action.connection_id}:{contact_id}:{action.target_id}",
        timeout=120, blocking_timeout=120,
    )
    lock.acquire()
    try:
        rows = ac.get(f"contacts/{contact_id}/contactAutomations").get("contactAutomations") or []
        for row in rows:
            automation = str(row.get("automation") or row.get("seriesid") or "")
            if automation == action.target_id and str(row.get("status")) == "1":
                raise _Final(
                    RecordStatus.ALREADY_IN_AUTOMATION,
                    f"already in automation '{action.target_name}'",
                    contact_id,
                )
        try:
            ac.add_to_automation(contact_id, action.target_id)
        except ActiveCampaignError as exc:
            if exc.transient:
                raise
            if "SubscriberSeries" in exc.message:
                raise _Final(
                    RecordStatus.FAILED,
                    "ActiveCampaign did not add the contact (is the automation still active?)",
                    contact_id,
                ) from None
            raise
    finally:
        # A lock that expired during a long 429 pause is not an error of the record.
        with contextlib.suppress(LockError):
            lock.release()


def _message_id(runtime: Runtime, ac: ActiveCampaignClient, campaign_id: str) -> str:
    key = f"ac:campaign-message:{campaign_id}:{ac.api_url}"
    cached = runtime.redis.get(key)
    if cached:
        return cached.decode()
    rows = ac.campaign_messages(campaign_id)
    message = next((str(r.get("messageid") or r.get("message") or "") for r in rows), "")
    if not message:
        raise _Final(RecordStatus.FAILED, "the campaign has no message to send")
    runtime.redis.set(key, message, ex=300)
    return message


def _send_campaign(
    runtime: Runtime, ac: ActiveCampaignClient, action: _Action, contact_id: str, email: str
) -> None:
    message_id = _message_id(runtime, ac, action.target_id)
    dedupe = f"ac:campaign-sent:{action.connection_id}:{action.target_id}:{contact_id}"
    if not runtime.redis.set(dedupe, action.id, nx=True, ex=CAMPAIGN_DEDUPE_SECONDS):
        other = runtime.redis.get(dedupe)
        if other is None or other.decode() != str(action.id):
            raise _Final(
                RecordStatus.ALREADY_SENT,
                f"'{action.target_name}' was sent to this contact a few minutes ago",
                contact_id,
            )
    try:
        ac.campaign_send(email, action.target_id, message_id)
    except BaseException:
        runtime.redis.delete(dedupe)
        raise


# --- the note on the Dynamics record --------------------------------------------------------


def note_text(action: _Action) -> str:
    who = action.user_name or "a Dynamics user"
    if action.action == ADD_TO_AUTOMATION:
        return f"Added to automation '{action.target_name}' by {who}"
    return f"Sent campaign '{action.target_name}' by {who}"


def _write_note(dv: DataverseClient, action: _Action, record_id: str) -> str | None:
    """Create the annotation; returns a problem to show (the action itself succeeded)."""
    info = entity_info(action.entity)
    body = {
        "subject": f"{NOTE_SUBJECT}: {note_text(action)}"[:500],
        "notetext": f"{note_text(action)} (ActiveCampaign Bridge, action {action.id}).",
        f"objectid_{action.entity}@odata.bind": f"/{info.entity_set}({record_id})",
    }
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            dv.create("annotations", body)
            return None
        except DataverseError as exc:
            if exc.transient and attempt < RECORD_ATTEMPTS:
                time.sleep(attempt)
                continue
            log.warning("note on %s(%s) failed: %s", info.entity_set, record_id, exc.message)
            return f"the note could not be written ({exc.message})"
    return None


# --- the job --------------------------------------------------------------------------------


def _process(
    runtime: Runtime, ac: ActiveCampaignClient, dv: DataverseClient, action: _Action,
    record_id: str,
) -> tuple[str, str, str | None]:
    contact_id, email = _contact_for(runtime, action, record_id)
    if runtime.redis.get(_marker(action, record_id)) is None:
        if action.action == ADD_TO_AUTOMATION:
            _add_to_automation(runtime, ac, action, contact_id)
        else:
            _send_campaign(runtime, ac, action, contact_id, email)
        runtime.redis.set(_marker(action, record_id), contact_id, ex=MARKER_TTL_SECONDS)
        contact_changed(runtime.redis, action.connection_id, contact_id)
    note_key = f"action:{action.id}:note:{record_id}"
    problem = None
    if runtime.redis.set(note_key, 1, nx=True, ex=MARKER_TTL_SECONDS):
        problem = _write_note(dv, action, record_id)
        if problem:
            runtime.redis.delete(note_key)
    detail = (
        f"added to automation '{action.target_name}'"
        if action.action == ADD_TO_AUTOMATION
        else f"campaign '{action.target_name}' sent to {email}"
    )
    return RecordStatus.DONE, f"{detail}; {problem}" if problem else detail, contact_id


def run_action(runtime: Runtime, action_id: int) -> dict[str, Any]:
    """Work through every record of the action; returns the counts per final status."""
    action, connection = _load(runtime, int(action_id))
    if action is None:
        return {"error": "no such action"}
    pending = [
        r for r in action.record_ids
        if (action.results.get(r) or {}).get("status") in (None, *RecordStatus.PENDING)
    ]
    if connection is None:
        for record_id in pending:
            _set(action, record_id, RecordStatus.FAILED, "the connection no longer exists")
        _save(runtime, action, ActionStatus.DONE)
        return _counts(action)
    _save(runtime, action, ActionStatus.RUNNING)
    try:
        ac = activecampaign_client(runtime, connection)
    except LookupError:
        for record_id in pending:
            _set(action, record_id, RecordStatus.FAILED, "ActiveCampaign is not connected")
        _save(runtime, action, ActionStatus.DONE)
        return _counts(action)
    dv = dataverse_client(runtime, connection)

    for record_id in pending:
        _set(action, record_id, RecordStatus.RUNNING)
        _save(runtime, action)
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                status, detail, contact_id = _process(runtime, ac, dv, action, record_id)
                _set(action, record_id, status, detail, contact_id)
                break
            except _Final as final:
                _set(action, record_id, final.status, final.detail, final.ac_contact_id)
                break
            except (ActiveCampaignError, DataverseError) as exc:
                if exc.transient and attempt < RECORD_ATTEMPTS:
                    log.info("action %s record %s: %s; retrying", action.id, record_id, exc)
                    time.sleep(2 * attempt)
                    continue
                _set(action, record_id, RecordStatus.FAILED, describe_error(exc))
                break
            except Exception as exc:  # one bad record must not stop the others
                log.exception("action %s record %s failed", action.id, record_id)
                _set(action, record_id, RecordStatus.FAILED, describe_error(exc))
                break
        _save(runtime, action)
    _save(runtime, action, ActionStatus.DONE)
    log.info("action %s (%s %s) finished: %s", action.id, action.action, action.target_id,
             _counts(action))
    return _counts(action)


def fail_unfinished(runtime: Runtime, action_id: int, reason: str) -> None:
    """Mark records still queued/running as failed (the job died or timed out)."""
    action, _ = _load(runtime, int(action_id))
    if action is None:
        return
    for record_id in action.record_ids:
        if (action.results.get(record_id) or {}).get("status") in (None, *RecordStatus.PENDING):
            _set(action, record_id, RecordStatus.FAILED, reason)
    with contextlib.suppress(Exception):
        _save(runtime, action, ActionStatus.DONE)


def _counts(action: _Action) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record_id in action.record_ids:
        status = (action.results.get(record_id) or {}).get("status", RecordStatus.QUEUED)
        counts[status] = counts.get(status, 0) + 1
    return counts

