"""Pushing one Dynamics lead or contact to ActiveCampaign: the real-time sync engine.

Plain functions taking a ``Runtime``, so tests call them directly and RQ tasks
stay thin. The rules (see ARCHITECTURE.md §4):

* the row is always re-read from Dataverse; the webhook only says *which* row;
* the ledger (``RecordLink``) decides: same payload hash → no ActiveCampaign call
  (echo suppression), a linked contact whose email changed is updated by id
  (never duplicated), a row that is gone is unlinked and loses its D365 tags;
* global sync off → the link is left ``pending`` and nothing is written;
* an ActiveCampaign change whose pull is still queued is pulled first (conflict rule);
* transient failures raise (RQ retries), permanent ones mark the link
  ``failing`` with a message a person can act on.

No database session is held open across an HTTP call: SQLite is shared by
several worker processes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import LockError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bridge.clients import (
    ActiveCampaignClient,
    ActiveCampaignError,
    DataverseClient,
    DataverseError,
    DataverseNotFound,
    activecampaign_client,
    dataverse_client,
)
from bridge.echo import echo_tag
from bridge.mapping import (
    AC_CONTACT_ID_COLUMN,
    AC_LAST_SYNCED_COLUMN,
    D365_TAGS,
    TAG_LEAD,
    TAG_PUSHED,
    ContactPayload,
    entity_info,
    payload_hash,
)
from bridge.models import Connection, LinkStatus, RecordLink, utcnow
from bridge.queueing import claim_record
from bridge.runtime import Runtime
from workers.setup import NO_EMAIL, ConfigurationError, application_user_id, load_entity_setup

log = logging.getLogger(__name__)

PUSH_TAG = echo_tag("push")

# One job per record at a time (a create still tagging must not race the update after it).
# The lock expires on its own so a killed worker cannot block a record for long; a push
# is a handful of requests, so LOCK_SECONDS is far above its normal duration.
LOCK_SECONDS = 120
LOCK_WAIT_SECONDS = 60


class RecordBusy(Exception):
    """Another job held the record's lock for longer than ``LOCK_WAIT_SECONDS`` (retried)."""

    transient = True


def lock_key(connection_id: int, entity: str, record_id: str) -> str:
    return f"bridge:lock:record:{connection_id}:{entity}:{record_id}"


@contextlib.contextmanager
def record_lock(
    redis_client, connection_id: int, entity: str, record_id: str,
    wait: float = LOCK_WAIT_SECONDS, ttl: float = LOCK_SECONDS,
) -> Iterator[None]:
    """Hold the per-record Redis lock shared by every job that writes this record.

    Blocks up to ``wait`` seconds, then raises ``RecordBusy`` (RQ retries the job).
    """
    lock = redis_client.lock(
        lock_key(connection_id, entity, record_id), timeout=ttl, blocking_timeout=wait,
        sleep=0.05,
    )
    if not lock.acquire():
        raise RecordBusy(f"{entity} {record_id} stayed locked by another job for {wait:.0f} s")
    try:
        yield
    finally:
        with contextlib.suppress(LockError):
            lock.release()  # it may have expired (a very slow push); nothing to undo then


class Outcome:
    """Values of ``SyncOutcome.outcome``."""

    SYNCED = "synced"
    UNCHANGED = "unchanged"
    EXCLUDED = "excluded"
    UNLINKED = "unlinked"
    PAUSED = "paused"
    NOT_CONNECTED = "not_connected"
    FAILING = "failing"
    SKIPPED = "skipped"  # the connection no longer exists


@dataclass(frozen=True)
class SyncOutcome:
    outcome: str
    connection_id: int
    entity: str
    record_id: str
    ac_contact_id: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict, which is what the RQ task returns (results outlive code versions)."""
        return {
            "outcome": self.outcome,
            "connection_id": self.connection_id,
            "entity": self.entity,
            "record_id": self.record_id,
            "ac_contact_id": self.ac_contact_id,
            "error": self.error,
        }


@dataclass(frozen=True)
class _LinkState:
    """A detached copy of the ledger row read at the start of a push."""

    exists: bool
    ac_contact_id: str | None = None
    email: str | None = None
    pushed_hash: str | None = None
    status: str | None = None


# --- ledger ------------------------------------------------------------------


def _find_link(session, connection_id: int, entity: str, record_id: str) -> RecordLink | None:
    return session.scalar(
        select(RecordLink).where(
            RecordLink.connection_id == connection_id,
            RecordLink.entity == entity,
            RecordLink.dynamics_id == record_id,
        )
    )


def save_link(
    runtime: Runtime, connection_id: int, entity: str, record_id: str, **values: Any
) -> None:
    """Create or update the record's ledger row (two workers may race to create it)."""
    for attempt in (1, 2):
        try:
            with runtime.db.session() as session:
                link = _find_link(session, connection_id, entity, record_id)
                if link is None:
                    link = RecordLink(
                        connection_id=connection_id, entity=entity, dynamics_id=record_id
                    )
                    session.add(link)
                for name, value in values.items():
                    setattr(link, name, value)
                link.updated_at = utcnow()
            return
        except IntegrityError:
            if attempt == 2:
                raise


def delete_link(runtime: Runtime, connection_id: int, entity: str, record_id: str) -> None:
    with runtime.db.session() as session:
        link = _find_link(session, connection_id, entity, record_id)
        if link is not None:
            session.delete(link)


def _load(
    runtime: Runtime, connection_id: int, entity: str, record_id: str
) -> tuple[Connection | None, _LinkState]:
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        link = _find_link(session, connection_id, entity, record_id)
        state = (
            _LinkState(True, link.ac_contact_id, link.email, link.pushed_hash, link.status)
            if link is not None
            else _LinkState(False)
        )
        if connection is not None:
            session.expunge(connection)
    return connection, state


# --- ActiveCampaign steps ------------------------------------------------------


def _tag_contact(ac: ActiveCampaignClient, contact_id: str, names: list[str]) -> None:
    """Add tags by name; a stale cached tag id (tag deleted in AC) is looked up again once."""
    for name in names:
        for attempt in (1, 2):
            tag_id = ac.ensure_tag(name)
            try:
                ac.add_tag(contact_id, tag_id)
                break
            except ActiveCampaignError as exc:
                if exc.transient:
                    raise
                if attempt == 1 and exc.status in (404, 422) and "tag" in exc.message.lower():
                    ac.forget_tag(name)
                    continue
                if exc.status == 422 and "already" in exc.message.lower():
                    break  # the contact already has it
                raise


def remove_d365_tags(
    ac: ActiveCampaignClient, contact_id: str, names: tuple[str, ...] = D365_TAGS
) -> int:
    """Take the ``D365: *`` tags (or just ``names``) off a contact; how many were removed."""
    try:
        contact_tags = ac.list_contact_tags(contact_id)
    except ActiveCampaignError as exc:
        if exc.status == 404:
            return 0  # the contact itself is gone
        raise
    wanted = {tag_id for name in names if (tag_id := ac.tag_id(name))}
    removed = 0
    for row in contact_tags:
        if str(row.get("tag")) in wanted:
            try:
                ac.remove_contact_tag(row["id"])
                removed += 1
            except ActiveCampaignError as exc:
                if exc.status != 404:
                    raise
    return removed


def _push_contact(
    ac: ActiveCampaignClient, payload: ContactPayload, link: _LinkState
) -> str:
    """Write the payload to ActiveCampaign; returns the contact id."""
    fields = {
        "first_name": payload.first_name,
        "last_name": payload.last_name,
        "phone": payload.phone,
        "field_values": payload.field_values or None,
    }
    if link.ac_contact_id and link.email and link.email != payload.email:
        # The email changed in Dynamics: update the linked contact by id. Syncing by
        # email would create a second contact and strand the first one's history.
        try:
            contact = ac.update_contact(link.ac_contact_id, email=payload.email, **fields)
            return str(contact.get("id") or link.ac_contact_id)
        except ActiveCampaignError as exc:
            if exc.status != 404:
                raise
            log.info("linked contact %s is gone from ActiveCampaign; syncing by email",
                     link.ac_contact_id)
    assert payload.email is not None
    contact = ac.sync_contact(payload.email, **fields)
    contact_id = contact.get("id")
    if not contact_id:
        raise ActiveCampaignError(None, "contact/sync returned no contact id", transient=True)
    return str(contact_id)


def _write_back(
    dv: DataverseClient, entity_set: str, record_id: str, ac_contact_id: str
) -> None:
    """Store the ActiveCampaign id on the Dynamics row, tagged so its webhook is an echo."""
    body = {
        AC_CONTACT_ID_COLUMN: ac_contact_id,
        AC_LAST_SYNCED_COLUMN: dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        dv.update(entity_set, record_id, body, tag=PUSH_TAG)
    except DataverseNotFound:
        log.info("%s(%s) was deleted before the write-back", entity_set, record_id)
    except DataverseError as exc:
        if exc.transient:
            raise
        # The contact is synced; only the convenience copy of its id failed to land.
        log.warning("could not write the ActiveCampaign id back to %s(%s): %s",
                    entity_set, record_id, exc.message)


# --- a lead qualified into a contact ----------------------------------------------------

QUALIFIED = 1  # lead statecode: 0 open, 1 qualified, 2 disqualified


def _linked_elsewhere(
    runtime: Runtime, connection_id: int, entity: str, ac_contact_id: str
) -> list[str]:
    with runtime.db.session() as session:
        return list(session.scalars(
            select(RecordLink.dynamics_id).where(
                RecordLink.connection_id == connection_id, RecordLink.entity == entity,
                RecordLink.ac_contact_id == ac_contact_id,
            )
        ).all())


def _contact_linked(
    runtime: Runtime, connection_id: int, ac_contact_id: str | None, email: str | None
) -> bool:
    """Whether a Dynamics contact is linked to this ActiveCampaign contact (id or email)."""
    with runtime.db.session() as session:
        query = select(RecordLink.id).where(
            RecordLink.connection_id == connection_id, RecordLink.entity == "contact",
            (RecordLink.ac_contact_id == ac_contact_id) if ac_contact_id
            else (RecordLink.email == email),
        )
        return session.scalar(query.limit(1)) is not None


def retire_qualified_leads(
    runtime: Runtime, connection_id: int, ac_contact_id: str, dv: DataverseClient,
    ac: ActiveCampaignClient,
) -> int:
    """A contact was just linked: the qualified (or deleted) lead of the same person hands
    its link over, and the ActiveCampaign contact swaps ``D365: Lead`` for ``D365: Contact``.
    A lead that is still open stays linked (the person is both). Returns leads retired."""
    retired = 0
    for lead_id in _linked_elsewhere(runtime, connection_id, "lead", ac_contact_id):
        try:
            lead = dv.get("leads", lead_id, select=["leadid", "statecode"])
        except DataverseNotFound:
            lead = None
        if lead is not None and lead.get("statecode") != QUALIFIED:
            continue
        delete_link(runtime, connection_id, "lead", lead_id)
        retired += 1
    if retired:
        remove_d365_tags(ac, ac_contact_id, (TAG_LEAD,))
        log.info("lead link of ActiveCampaign contact %s moved to its contact", ac_contact_id)
    return retired


# --- the job -----------------------------------------------------------------


def push_record(
    runtime: Runtime, connection_id: int, entity: str, record_id: str
) -> SyncOutcome:
    """Bring ActiveCampaign in line with one Dynamics row (see the module docstring).

    Runs under the record's lock: a second job for the same record waits for the
    first to finish (and then usually finds nothing left to do).
    """
    record_id = str(record_id).strip("{}").lower()
    with record_lock(runtime.redis, connection_id, entity, record_id):
        claim_record(runtime.redis, connection_id, entity, record_id)
        return _push_locked(runtime, connection_id, entity, record_id)


def _push_locked(
    runtime: Runtime, connection_id: int, entity: str, record_id: str
) -> SyncOutcome:
    info = entity_info(entity)

    def outcome(kind: str, ac_id: str | None = None, error: str | None = None) -> SyncOutcome:
        log.info("push %s %s (connection %s): %s%s", entity, record_id, connection_id, kind,
                 f" ({error})" if error else "")
        return SyncOutcome(kind, connection_id, entity, record_id, ac_id, error)

    connection, link = _load(runtime, connection_id, entity, record_id)
    if connection is None:
        return outcome(Outcome.SKIPPED, error="connection no longer exists")
    if not connection.global_sync_enabled:
        # Recorded, not lost: the scheduler requeues pending links once sync is back on.
        save_link(runtime, connection_id, entity, record_id, status=LinkStatus.PENDING)
        return outcome(Outcome.PAUSED, link.ac_contact_id)
    try:
        ac = activecampaign_client(runtime, connection)
    except LookupError:
        save_link(runtime, connection_id, entity, record_id, status=LinkStatus.PENDING,
                  last_error="ActiveCampaign is not connected")
        return outcome(Outcome.NOT_CONNECTED, error="ActiveCampaign is not connected")

    try:
        dv = dataverse_client(runtime, connection)
        if not connection.dataverse_app_user_id:
            application_user_id(runtime, connection_id, dv)  # once: webhook echo suppression
        try:
            setup = load_entity_setup(runtime, connection_id, entity, dv, ac)
        except ConfigurationError as exc:
            save_link(runtime, connection_id, entity, record_id, status=LinkStatus.FAILING,
                      last_error=str(exc))
            return outcome(Outcome.FAILING, link.ac_contact_id, str(exc))
        if link.ac_contact_id:
            # An ActiveCampaign edit whose pull is still queued is settled first, by the
            # connection's conflict rule, exactly as if the pull had run before this push.
            from workers.inbound import settle_pending_pull  # (it imports this module)

            if settle_pending_pull(runtime, connection, entity, record_id,
                                   link.ac_contact_id, dv, ac) is not None:
                _, link = _load(runtime, connection_id, entity, record_id)
        select_columns = [*setup.select, "statecode"] if entity == "lead" else setup.select
        try:
            row = dv.get(info.entity_set, record_id, select=select_columns,
                         annotations=setup.annotations)
        except DataverseNotFound:
            if link.ac_contact_id:
                remove_d365_tags(ac, link.ac_contact_id)
            delete_link(runtime, connection_id, entity, record_id)
            return outcome(Outcome.UNLINKED, link.ac_contact_id)

        reason = setup.exclusion(row)
        if reason is not None:
            save_link(runtime, connection_id, entity, record_id, status=LinkStatus.EXCLUDED,
                      last_error=reason)
            return outcome(Outcome.EXCLUDED, link.ac_contact_id, reason)
        mapped = setup.map(row)
        payload = mapped.payload
        problems = "; ".join(mapped.problems) or None
        if payload.email is None:
            save_link(runtime, connection_id, entity, record_id, status=LinkStatus.EXCLUDED,
                      last_error=NO_EMAIL)
            return outcome(Outcome.EXCLUDED, link.ac_contact_id, NO_EMAIL)

        if entity == "lead" and row.get("statecode") == QUALIFIED and _contact_linked(
            runtime, connection_id, link.ac_contact_id, payload.email
        ):
            # Qualified into a contact that is already linked: the link has moved there.
            delete_link(runtime, connection_id, entity, record_id)
            if link.ac_contact_id:
                remove_d365_tags(ac, link.ac_contact_id, (TAG_LEAD,))
            return outcome(Outcome.UNLINKED, link.ac_contact_id, "qualified into a contact")

        digest = payload_hash(payload)
        if (
            link.ac_contact_id
            and link.pushed_hash == digest
            and link.status == LinkStatus.SYNCED
        ):
            if row.get(AC_CONTACT_ID_COLUMN) != link.ac_contact_id:
                _write_back(dv, info.entity_set, record_id, link.ac_contact_id)
            return outcome(Outcome.UNCHANGED, link.ac_contact_id)

        ac_id = _push_contact(ac, payload, link)
        if ac_id != link.ac_contact_id:
            _tag_contact(ac, ac_id, [info.tag, TAG_PUSHED])
        save_link(
            runtime, connection_id, entity, record_id,
            ac_contact_id=ac_id, email=payload.email, pushed_hash=digest,
            status=LinkStatus.SYNCED, last_synced_at=utcnow(), last_error=problems,
            synced_values=setup.mapper.dynamics_values(row),
        )
        if row.get(AC_CONTACT_ID_COLUMN) != ac_id:
            _write_back(dv, info.entity_set, record_id, ac_id)
        if entity == "contact" and ac_id != link.ac_contact_id:
            retire_qualified_leads(runtime, connection_id, ac_id, dv, ac)
        return outcome(Outcome.SYNCED, ac_id)
    except ActiveCampaignError as exc:
        if exc.transient:
            raise
        message = f"ActiveCampaign rejected the contact: {exc.message}"
    except DataverseError as exc:
        if exc.transient:
            raise
        message = f"Dataverse refused the request: {exc.message}"
    save_link(runtime, connection_id, entity, record_id, status=LinkStatus.FAILING,
              last_error=message)
    return outcome(Outcome.FAILING, link.ac_contact_id, message)


def readable_error(exc: BaseException) -> str:
    """What the ledger shows for an error that exhausted its retries (never a secret)."""
    if isinstance(exc, ActiveCampaignError | DataverseError):
        return exc.message
    if isinstance(exc, RecordBusy):
        return str(exc)
    return f"internal error ({type(exc).__name__}); see the worker log"


def record_final_failure(
    runtime: Runtime, connection_id: int, entity: str, record_id: str, exc: BaseException
) -> None:
    """Mark the link ``failing`` once no retry is left, so Sync Health shows why."""
    save_link(runtime, int(connection_id), entity, str(record_id).strip("{}").lower(),
              status=LinkStatus.FAILING, last_error=readable_error(exc))
