"""ActiveCampaign → Dynamics: pulling a contact's changes into its linked lead or contact.

Plain functions taking a ``Runtime`` (RQ entry points in ``workers.tasks``).
The rules (ARCHITECTURE.md §4, issue #6):

* the webhook only says *which* contact; the contact is re-read from the API;
* only fields whose mapping direction allows it are written (``Mapper.to_dynamics``),
  with ``?tag=acbridge:pull`` so the Dataverse webhook that follows is ignored;
* the ledger's ``pulled_hash`` makes an unchanged pull write nothing (not even a read
  of the row); ``synced_values`` (the values both sides last agreed on) tells a change
  made in ActiveCampaign from one made in Dynamics, and a field changed on both sides
  is a conflict settled by ``Connection.conflict_rule`` and noted in ``last_conflict``;
* ``unsubscribe`` sets ``donotbulkemail`` on the linked record (``subscribe`` clears it);
* the automation Webhook action's "create lead"/"create contact" creates the record at
  once unless one with that email exists (then it is linked), and tags the contact
  ``D365: Lead``/``D365: Contact`` + ``D365: Pulled from ActiveCampaign``.

Pulls of one ActiveCampaign contact are serialized by a lock on the contact, and
each linked record's write happens under the same per-record lock as a push. A push
that finds a pull of its contact still queued settles that pull first, under its own
lock (``settle_pending_pull``), so the conflict rule decides whichever job runs first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from bridge.clients import (
    ActiveCampaignClient,
    ActiveCampaignError,
    DataverseClient,
    DataverseError,
    DataverseNotFound,
    activecampaign_client,
    dataverse_client,
)
from bridge.connections import rotate_activecampaign_webhook_token
from bridge.criteria import parse_datetime
from bridge.echo import echo_tag
from bridge.mapping import (
    AC_CONTACT_ID_COLUMN,
    TAG_PULLED,
    entity_info,
    normalize_email,
    payload_hash,
)
from bridge.models import Connection, LinkStatus, RecordLink, utcnow
from bridge.queueing import claim_contact_pull, enqueue_record_sync, pending_contact_pulls
from bridge.runtime import Runtime
from workers.setup import (
    ConfigurationError,
    EntitySetup,
    application_user_id,
    load_entity_setup,
)
from workers.sync import _tag_contact, record_lock, save_link

log = logging.getLogger(__name__)

PULL_TAG = echo_tag("pull")
ENTITIES = ("lead", "contact")

DYNAMICS_WINS = "dynamics_wins"
ACTIVECAMPAIGN_WINS = "activecampaign_wins"
MOST_RECENT = "most_recent"
CONFLICT_RULES = (DYNAMICS_WINS, ACTIVECAMPAIGN_WINS, MOST_RECENT)

# The account webhook the bridge registers: never the "api" source, so the bridge's
# own writes to ActiveCampaign (and other integrations', polled instead) do not echo.
WEBHOOK_NAME = "Dynamics 365 (ActiveCampaign Bridge)"
WEBHOOK_EVENTS = ["update", "unsubscribe", "subscribe", "contact_tag_added", "contact_tag_removed"]
WEBHOOK_SOURCES = ["public", "admin", "system"]


# --- webhook registration (called by the admin "Connect" flow) --------------------------


def webhook_base(public_url: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/activecampaign/"


def register_activecampaign_webhook(runtime: Runtime, connection_id: int) -> str:
    """Give the connection a fresh secret URL and register it as the account webhook.

    Removes the bridge's earlier webhooks (same URL prefix) first. Returns the URL
    (it holds the secret: show it to nobody but ActiveCampaign). The automation
    action URLs are this URL + ``/create-lead`` and ``/create-contact``.
    """
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise LookupError(f"no connection {connection_id}")
        token = rotate_activecampaign_webhook_token(connection)
        session.flush()
        session.expunge(connection)
    ac = activecampaign_client(runtime, connection)
    unregister_activecampaign_webhook(runtime, connection_id, ac)
    url = webhook_base(runtime.settings.public_url) + token
    ac.create_webhook(WEBHOOK_NAME, url, WEBHOOK_EVENTS, WEBHOOK_SOURCES)
    return url


def unregister_activecampaign_webhook(
    runtime: Runtime, connection_id: int, ac: ActiveCampaignClient | None = None
) -> int:
    """Delete the bridge's account webhooks of this connection's account; how many."""
    if ac is None:
        with runtime.db.session() as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                return 0
            session.expunge(connection)
        ac = activecampaign_client(runtime, connection)
    prefix = webhook_base(runtime.settings.public_url)
    removed = 0
    for hook in ac.list_webhooks():
        if str(hook.get("url", "")).startswith(prefix):
            ac.delete_webhook(hook["id"])
            removed += 1
    return removed


# --- helpers ------------------------------------------------------------------------------


def values_hash(values: dict[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AcContact:
    id: str
    standard: dict[str, Any]  # email, firstName, lastName, phone
    field_values: dict[str, Any]  # custom field id → value
    updated: dt.datetime | None


def read_contact(ac: ActiveCampaignClient, contact_id: str) -> AcContact | None:
    """The contact and its custom field values in one request; None when it is gone."""
    try:
        body = ac.get(f"contacts/{contact_id}")
    except ActiveCampaignError as exc:
        if exc.status == 404:
            return None
        raise
    contact = body.get("contact") or {}
    if not contact:
        return None
    standard = {k: contact.get(k) for k in ("email", "firstName", "lastName", "phone")}
    values = {
        str(fv.get("field")): fv.get("value")
        for fv in body.get("fieldValues") or []
        if fv.get("field") is not None
    }
    updated = parse_datetime(str(contact.get("udate") or "")) if contact.get("udate") else None
    return AcContact(str(contact.get("id") or contact_id), standard, values, updated)


@dataclass(frozen=True)
class _Link:
    entity: str
    record_id: str
    ac_contact_id: str | None
    pushed_hash: str | None
    pulled_hash: str | None
    synced_values: dict | None
    status: str


def _links_for(runtime: Runtime, connection_id: int, contact: AcContact) -> list[_Link]:
    """The ledger rows of this contact: by ActiveCampaign id, else by email."""
    email = normalize_email(contact.standard.get("email"))
    with runtime.db.session() as session:
        rows = session.scalars(
            select(RecordLink).where(
                RecordLink.connection_id == connection_id,
                or_(
                    RecordLink.ac_contact_id == contact.id,
                    (RecordLink.email == email) & RecordLink.ac_contact_id.is_(None)
                    if email else RecordLink.ac_contact_id == contact.id,
                ),
                RecordLink.status.in_((LinkStatus.SYNCED, LinkStatus.PENDING)),
            )
        ).all()
        return [
            _Link(r.entity, r.dynamics_id, r.ac_contact_id, r.pushed_hash, r.pulled_hash,
                  dict(r.synced_values) if r.synced_values else None, r.status)
            for r in rows
        ]


def _winner(rule: str, contact: AcContact, row: dict[str, Any]) -> str:
    """Which side's value stands when both changed: "activecampaign" or "dynamics"."""
    if rule == ACTIVECAMPAIGN_WINS:
        return "activecampaign"
    if rule == DYNAMICS_WINS:
        return "dynamics"
    modified = parse_datetime(str(row.get("modifiedon") or ""))
    if contact.updated is None or modified is None:
        return "dynamics"
    return "activecampaign" if contact.updated > modified else "dynamics"


def _result(outcome: str, **extra: Any) -> dict[str, Any]:
    return {"outcome": outcome, **extra}


# --- the job ------------------------------------------------------------------------------


def pull_contact(
    runtime: Runtime, connection_id: int, ac_contact_id: str, kind: str = "update",
    message: str | None = None,
) -> dict[str, Any]:
    """Bring Dynamics in line with one ActiveCampaign contact (see the module docstring).

    ``kind``: ``update`` | ``subscribe`` | ``unsubscribe`` | ``create:lead`` |
    ``create:contact``. Transient errors propagate (RQ retries).
    """
    ac_contact_id = str(ac_contact_id)
    with record_lock(runtime.redis, connection_id, "ac", ac_contact_id):
        claim_contact_pull(runtime.redis, connection_id, kind, ac_contact_id)
        with runtime.db.session() as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                return _result("skipped", error="connection no longer exists")
            session.expunge(connection)
        if not connection.global_sync_enabled:
            # Not lost: the scheduled sync's updated_after poll picks it up once sync is on.
            return _result("paused")
        try:
            ac = activecampaign_client(runtime, connection)
        except LookupError:
            return _result("not_connected")
        dv = dataverse_client(runtime, connection)
        contact = read_contact(ac, ac_contact_id)
        if not connection.dataverse_app_user_id:
            application_user_id(runtime, connection_id, dv)
        if contact is None:
            return _result("gone")
        if kind.startswith("create:"):
            return create_from_contact(runtime, connection, kind.split(":", 1)[1], contact,
                                       dv, ac)
        links = _links_for(runtime, connection_id, contact)
        if not links:
            return _result("not_linked")
        results = {}
        for link in links:
            with record_lock(runtime.redis, connection_id, link.entity, link.record_id):
                results[f"{link.entity}:{link.record_id}"] = _pull_into(
                    runtime, connection, link, contact, kind, dv, ac
                )
        return _result("pulled", records=results)


def _link_of(runtime: Runtime, connection_id: int, entity: str, record_id: str) -> _Link | None:
    with runtime.db.session() as session:
        r = session.scalar(
            select(RecordLink).where(
                RecordLink.connection_id == connection_id, RecordLink.entity == entity,
                RecordLink.dynamics_id == record_id,
            )
        )
        if r is None:
            return None
        return _Link(r.entity, r.dynamics_id, r.ac_contact_id, r.pushed_hash, r.pulled_hash,
                     dict(r.synced_values) if r.synced_values else None, r.status)


def settle_pending_pull(
    runtime: Runtime, connection: Connection, entity: str, record_id: str,
    ac_contact_id: str, dv: DataverseClient, ac: ActiveCampaignClient,
) -> dict[str, Any] | None:
    """Run the queued pull of the record's contact now, for this record; None if none waits.

    Called by ``push_record`` while it holds the record's lock and before it writes to
    ActiveCampaign, so an ActiveCampaign edit still waiting to be pulled meets the
    connection's conflict rule instead of being overwritten by the push. The common
    case (nothing queued) costs one Redis round trip and no ActiveCampaign request.
    The pull is claimed only once settled: the queued job still runs later and finds
    nothing to write (if this raises, the push is retried and settles it again).
    """
    kinds = pending_contact_pulls(runtime.redis, connection.id, ac_contact_id)
    if not kinds:
        return None
    # (Un)subscribe pulls carry the fields too; their queued jobs still run in order.
    kind = next((k for k in ("unsubscribe", "subscribe") if k in kinds), "update")
    contact = read_contact(ac, ac_contact_id)
    link = _link_of(runtime, connection.id, entity, record_id)
    if contact is None:
        result = _result("gone")
    elif (link is None or link.ac_contact_id != contact.id
          or link.status not in (LinkStatus.SYNCED, LinkStatus.PENDING)):
        result = _result("not_linked")
    else:
        # The push that called this is the push a Dynamics value needs: queue none.
        result = _pull_into(runtime, connection, link, contact, kind, dv, ac,
                            queue_push=False)
    for claimed in kinds:
        claim_contact_pull(runtime.redis, connection.id, claimed, ac_contact_id)
    log.info("push of %s %s settled the queued %s pull of contact %s first: %s",
             entity, record_id, "/".join(kinds), ac_contact_id, result["outcome"])
    return result


def _pull_into(
    runtime: Runtime, connection: Connection, link: _Link, contact: AcContact, kind: str,
    dv: DataverseClient, ac: ActiveCampaignClient, queue_push: bool = True,
) -> dict[str, Any]:
    """Pull the contact into one linked record. Takes no lock: the caller holds the
    record's (``pull_contact``, or ``push_record`` via ``settle_pending_pull``)."""
    entity, record_id = link.entity, link.record_id
    info = entity_info(entity)
    try:
        setup = load_entity_setup(runtime, connection.id, entity, dv, ac)
    except ConfigurationError as exc:
        return _result("failing", error=str(exc))
    if not setup.enabled:
        return _result("excluded", error=f"{entity} sync is turned off")
    mapper = setup.mapper
    change = mapper.to_dynamics(contact.standard, contact.field_values)
    body = dict(change.body)
    if kind == "unsubscribe":
        body["donotbulkemail"] = True
    elif kind == "subscribe":
        body["donotbulkemail"] = False
    digest = values_hash(body)
    if digest == link.pulled_hash:
        return _result("unchanged")  # the same values were pulled before: nothing to do

    select_columns = sorted({*setup.select, "modifiedon", *body})
    try:
        row = dv.get(info.entity_set, record_id, select=select_columns,
                     annotations=setup.annotations)
    except DataverseNotFound:
        enqueue_record_sync(runtime.redis, connection.id, entity, record_id, "Delete")
        return _result("gone")
    reason = setup.exclusion(row)
    if reason is not None:
        return _result("excluded", error=reason)

    base = link.synced_values or {}
    apply: dict[str, Any] = {}
    agreed: dict[str, Any] = {}
    conflicts: list[str] = []
    dynamics_newer = False
    for column, incoming in body.items():
        current = row.get(column)
        if mapper.same_value(column, current, incoming):
            agreed[column] = current
            continue
        if column == "donotbulkemail":
            apply[column] = incoming
            continue
        if (mapper.standard and column == "telephone1" and not current
                and mapper.same_value(column, row.get("mobilephone"), incoming)):
            continue  # ActiveCampaign's phone came from the mobile number
        if column in base and mapper.same_value(column, current, base[column]):
            apply[column] = incoming  # only ActiveCampaign changed it
        elif column in base and mapper.same_value(column, incoming, base[column]):
            dynamics_newer = True  # only Dynamics changed it: its push is (or will be) queued
        else:
            winner = _winner(connection.conflict_rule or MOST_RECENT, contact, row)
            conflicts.append(
                f"{column}: Dynamics {current!r}, ActiveCampaign {incoming!r} → "
                f"{'ActiveCampaign' if winner == 'activecampaign' else 'Dynamics'} wins "
                f"({connection.conflict_rule or MOST_RECENT})"
            )
            if winner == "activecampaign":
                apply[column] = incoming
            else:
                dynamics_newer = True

    if apply:
        try:
            dv.update(info.entity_set, record_id, apply, tag=PULL_TAG)
        except DataverseNotFound:
            enqueue_record_sync(runtime.redis, connection.id, entity, record_id, "Delete")
            return _result("gone")

    new_row = {**row, **apply}
    values: dict[str, Any] = {
        "pulled_hash": digest,
        "synced_values": {**base, **agreed, **{c: v for c, v in apply.items()
                                              if c != "donotbulkemail"}},
        "last_synced_at": utcnow(),
    }
    if conflicts:
        stamp = utcnow().strftime("%Y-%m-%d %H:%M:%SZ")
        values["last_conflict"] = f"{stamp} " + "; ".join(conflicts)
    if link.ac_contact_id is None:
        values["ac_contact_id"] = contact.id
    if change.problems:
        values["last_error"] = "; ".join(change.problems)
    if not dynamics_newer and link.pushed_hash == payload_hash(setup.map(row).payload):
        # ActiveCampaign already holds the merged values: the next push has nothing to send.
        values["pushed_hash"] = payload_hash(setup.map(new_row).payload)
    save_link(runtime, connection.id, entity, record_id, **values)
    if dynamics_newer and queue_push:
        enqueue_record_sync(runtime.redis, connection.id, entity, record_id,
                            "Dynamics value stands")
    return _result("updated" if apply else "unchanged", written=sorted(apply),
                   conflicts=len(conflicts), push_queued=dynamics_newer)


# --- create lead / create contact ------------------------------------------------------------


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _find_by_email(dv: DataverseClient, setup: EntitySetup, email: str) -> str | None:
    info = setup.info
    rows, _ = dv.query_page(
        info.entity_set, select=[info.primary_key],
        filter=f"{setup.mapper.email_column} eq {_odata_string(email)}", page_size=1, top=1,
    )
    return str(rows[0][info.primary_key]).lower() if rows else None


def create_from_contact(
    runtime: Runtime, connection: Connection, entity: str, contact: AcContact,
    dv: DataverseClient, ac: ActiveCampaignClient,
) -> dict[str, Any]:
    """The automation action: create (or link) the Dynamics record for this contact now."""
    info = entity_info(entity)
    tags = [info.tag, TAG_PULLED]
    email = normalize_email(contact.standard.get("email"))
    if email is None:
        return _result("failing", error="the contact has no email address")
    try:
        setup = load_entity_setup(runtime, connection.id, entity, dv, ac)
    except ConfigurationError as exc:
        return _result("failing", error=str(exc))
    if not setup.enabled:
        return _result("excluded", error=f"{entity} sync is turned off")

    with runtime.db.session() as session:
        existing = session.execute(
            select(RecordLink.dynamics_id, RecordLink.status).where(
                RecordLink.connection_id == connection.id, RecordLink.entity == entity,
                RecordLink.ac_contact_id == contact.id,
            )
        ).first()
    if existing is not None:
        record_id, status = existing
        # Linked already (pushed from Dynamics, or an earlier delivery): make sure the
        # contact carries the tags the action promises, nothing else.
        _tag_contact(ac, contact.id, tags)
        if status != LinkStatus.SYNCED:
            save_link(runtime, connection.id, entity, record_id, status=LinkStatus.SYNCED)
        return _result("already_linked", entity=entity, record_id=record_id)

    record_id = _find_by_email(dv, setup, email)
    if record_id is not None:
        with record_lock(runtime.redis, connection.id, entity, record_id):
            save_link(runtime, connection.id, entity, record_id, ac_contact_id=contact.id,
                      email=email, status=LinkStatus.PENDING, last_error=None)
            _tag_contact(ac, contact.id, tags)
            save_link(runtime, connection.id, entity, record_id, status=LinkStatus.PENDING)
        # The existing record is the reference: the real-time engine pushes it to the contact.
        enqueue_record_sync(runtime.redis, connection.id, entity, record_id,
                            "Linked by automation")
        return _result("linked", entity=entity, record_id=record_id)

    change = setup.mapper.to_dynamics(contact.standard, contact.field_values)
    body = dict(change.body)
    if not body.get("lastname"):
        body["lastname"] = (str(contact.standard.get("lastName") or "").strip()
                            or email.split("@", 1)[0])
    if entity == "lead" and not body.get("subject"):
        body["subject"] = "Created from ActiveCampaign"
    body[AC_CONTACT_ID_COLUMN] = contact.id
    try:
        record_id = dv.create(info.entity_set, body, tag=PULL_TAG)
    except DataverseError as exc:
        if exc.transient:
            raise
        return _result("failing", error=f"Dataverse refused the {entity}: {exc.message}")
    with record_lock(runtime.redis, connection.id, entity, record_id):
        save_link(
            runtime, connection.id, entity, record_id, ac_contact_id=contact.id, email=email,
            status=LinkStatus.PENDING, pulled_hash=values_hash(change.body),
            pushed_hash=payload_hash(setup.map(body).payload),
            synced_values=setup.mapper.dynamics_values(body),
            last_error="; ".join(change.problems) or None,
        )
        _tag_contact(ac, contact.id, tags)
        save_link(runtime, connection.id, entity, record_id, status=LinkStatus.SYNCED,
                  last_synced_at=utcnow())
    log.info("created %s %s from ActiveCampaign contact %s", entity, record_id, contact.id)
    return _result("created", entity=entity, record_id=record_id)
