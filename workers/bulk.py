"""Pushing many Dynamics rows to ActiveCampaign with bulk import.

Used by the initial sync (and any path with many rows at once). Per call: the
rows are judged (switch, criteria, email) and mapped with the same
``EntitySetup`` as the real-time path, rows whose payload hash the ledger
already holds are skipped, the rest go out in ``POST /import/bulk_import``
batches (≤250 contacts, <400,000 bytes, tags by name), every batch is confirmed
with ``GET /import/info`` — which also gives the contact ids, so none is looked
up one by one — and the ledger is written in one transaction.

ActiveCampaign allows 100 multi-contact imports a minute per account; a Redis
window shared by every worker keeps the bridge under it, and a "Rate limit
exceeded" answer (someone else importing into the account) pauses it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bridge.clients import ActiveCampaignClient, ActiveCampaignError
from bridge.mapping import TAG_PUSHED, ContactPayload, payload_hash, record_id
from bridge.models import LinkStatus, RecordLink, utcnow
from bridge.queueing import enqueue_record_sync
from bridge.ratelimit import RedisRateLimiter, activecampaign_limiter_key
from bridge.runtime import Runtime
from workers.setup import NO_EMAIL, EntitySetup

log = logging.getLogger(__name__)

MAX_BATCH_CONTACTS = 250
MAX_BATCH_BYTES = 390_000  # AC's limit is 399,999; headroom for the envelope
BULK_REQUESTS_PER_WINDOW = 100
BULK_WINDOW_SECONDS = 60.0
CONFIRM_TIMEOUT_SECONDS = 900.0
EMAIL_RE = re.compile(r"^[^@\s'\"]+@[^@\s'\"]+\.[A-Za-z]{2,}$")


def bulk_limiter(runtime: Runtime, api_url: str) -> RedisRateLimiter:
    """The account's shared window for multi-contact imports (100 a minute)."""
    return RedisRateLimiter(
        runtime.redis,
        activecampaign_limiter_key(api_url) + ":bulk",
        rate=BULK_REQUESTS_PER_WINDOW,
        per=BULK_WINDOW_SECONDS,
        margin=1.0,
    )


@dataclass
class LinkWrite:
    """What the ledger should say about one row after the push."""

    record_id: str
    status: str
    email: str | None = None
    pushed_hash: str | None = None
    ac_contact_id: str | None = None
    last_error: str | None = None
    synced_values: dict | None = None


@dataclass
class BulkResult:
    done: int = 0  # rows handled (pushed, unchanged or excluded)
    failed: int = 0
    pushed: int = 0
    requests: int = 0
    writes: list[LinkWrite] = field(default_factory=list)


def import_contact(
    payload: ContactPayload, tags: list[str], exclude_automations: bool
) -> dict[str, Any]:
    """One contact in bulk-import shape (snake_case names, tags by name, fields by id)."""
    item: dict[str, Any] = {"email": payload.email}
    if payload.first_name is not None:
        item["first_name"] = payload.first_name
    if payload.last_name is not None:
        item["last_name"] = payload.last_name
    if payload.phone is not None:
        item["phone"] = payload.phone
    item["tags"] = tags
    if payload.field_values:
        item["fields"] = [{"id": k, "value": v} for k, v in payload.field_values.items()]
    item["exclude_automations"] = bool(exclude_automations)
    return item


def batches(items: list[tuple[str, dict]]) -> Iterable[list[tuple[str, dict]]]:
    """Split (record id, contact) pairs into ≤250-contact, <400,000-byte requests."""
    batch: list[tuple[str, dict]] = []
    size = 64
    for pair in items:
        item_size = len(json.dumps(pair[1], ensure_ascii=False).encode()) + 1
        if batch and (len(batch) >= MAX_BATCH_CONTACTS or size + item_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 64
        batch.append(pair)
        size += item_size
    if batch:
        yield batch


def _existing_links(runtime: Runtime, connection_id: int, entity: str, ids: list[str]):
    found: dict[str, tuple[str | None, str | None, str, str | None]] = {}
    with runtime.db.session() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = session.execute(
                select(
                    RecordLink.dynamics_id, RecordLink.pushed_hash,
                    RecordLink.ac_contact_id, RecordLink.status, RecordLink.email,
                ).where(
                    RecordLink.connection_id == connection_id,
                    RecordLink.entity == entity,
                    RecordLink.dynamics_id.in_(chunk),
                )
            ).all()
            for dynamics_id, digest, ac_id, status, email in rows:
                found[dynamics_id] = (digest, ac_id, status, email)
    return found


def write_links(
    runtime: Runtime, connection_id: int, entity: str, writes: list[LinkWrite],
    extra: Callable[[Any], None] | None = None,
) -> None:
    """Upsert the ledger rows (and run ``extra(session)`` in the same transaction)."""
    by_id = {w.record_id: w for w in writes}
    now = utcnow()
    with runtime.db.session() as session:
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for link in session.scalars(
                select(RecordLink).where(
                    RecordLink.connection_id == connection_id,
                    RecordLink.entity == entity,
                    RecordLink.dynamics_id.in_(chunk),
                )
            ):
                write = by_id.pop(link.dynamics_id)
                _apply(link, write, now)
        for write in by_id.values():
            link = RecordLink(connection_id=connection_id, entity=entity,
                              dynamics_id=write.record_id)
            _apply(link, write, now)
            session.add(link)
        if extra is not None:
            extra(session)


def _apply(link: RecordLink, write: LinkWrite, now) -> None:
    link.status = write.status
    link.last_error = write.last_error
    link.updated_at = now
    if write.email is not None:
        link.email = write.email
    if write.pushed_hash is not None:
        link.pushed_hash = write.pushed_hash
    if write.ac_contact_id is not None:
        link.ac_contact_id = write.ac_contact_id
    if write.synced_values is not None and write.status == LinkStatus.SYNCED:
        link.synced_values = write.synced_values
    if write.status == LinkStatus.SYNCED:
        link.last_synced_at = now


def submit(ac: ActiveCampaignClient, limiter: RedisRateLimiter, contacts: list[dict]) -> str:
    """Queue one import through the shared window; returns its batch id."""
    waited = 0.0
    while True:
        limiter.acquire()
        try:
            body = ac.bulk_import(contacts)
        except ActiveCampaignError as exc:
            if exc.status == 400 and "rate limit" in exc.message.lower():
                # Someone else (or another bridge) is importing into this account.
                log.info("bulk import rate limit reached; pausing the window 5 s")
                limiter.pause(5.0)
                waited += 5.0
                if waited > 600:
                    raise ActiveCampaignError(
                        400, "bulk import kept being rate limited for 10 minutes",
                        transient=True,
                    ) from None
                continue
            raise
        batch_id = body.get("batchId")
        if not batch_id:
            raise ActiveCampaignError(None, "bulk import returned no batchId", transient=True)
        return str(batch_id)


def confirm(
    ac: ActiveCampaignClient, batch_ids: list[str], timeout: float = CONFIRM_TIMEOUT_SECONDS
) -> dict[str, dict]:
    """Poll ``import/info`` until every batch is completed; batch id → info."""
    pending = list(batch_ids)
    done: dict[str, dict] = {}
    delay = 0.1
    if pending:
        time.sleep(delay)  # an import is never done the instant it is queued
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for batch_id in pending:
            info = ac.import_info(batch_id)
            if str(info.get("status", "")).lower() == "completed":
                done[batch_id] = info
            else:
                still.append(batch_id)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise ActiveCampaignError(
                    None, f"{len(pending)} bulk import(s) not completed after {timeout:.0f} s",
                    transient=True,
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    return done


def push_rows(
    runtime: Runtime,
    connection_id: int,
    setup: EntitySetup,
    rows: list[dict],
    ac: ActiveCampaignClient,
    exclude_automations: bool,
    limiter: RedisRateLimiter,
) -> BulkResult:
    """Push ``rows`` of one table in bulk; returns the ledger writes (not yet saved)."""
    result = BulkResult()
    entity = setup.entity
    ids = [rid for row in rows if (rid := record_id(entity, row))]
    known = _existing_links(runtime, connection_id, entity, ids)
    to_send: list[tuple[str, dict]] = []
    planned: dict[str, LinkWrite] = {}
    tags = [setup.info.tag, TAG_PUSHED]
    for row in rows:
        rid = record_id(entity, row)
        if rid is None:
            continue
        reason = setup.exclusion(row)
        if reason is not None:
            result.writes.append(LinkWrite(rid, LinkStatus.EXCLUDED, last_error=reason))
            result.done += 1
            continue
        mapped = setup.map(row)
        payload = mapped.payload
        if payload.email is None:
            result.writes.append(LinkWrite(rid, LinkStatus.EXCLUDED, last_error=NO_EMAIL))
            result.done += 1
            continue
        if not EMAIL_RE.match(payload.email):
            result.writes.append(LinkWrite(
                rid, LinkStatus.FAILING,
                last_error=f"ActiveCampaign does not accept the email address {payload.email}",
            ))
            result.failed += 1
            continue
        digest = payload_hash(payload)
        previous = known.get(rid)
        if previous and previous[0] == digest and previous[1] and \
                previous[2] == LinkStatus.SYNCED:
            result.done += 1  # ActiveCampaign already has exactly this
            continue
        if previous and previous[1] and previous[3] and previous[3] != payload.email:
            # An email change on a linked contact: importing by the new email would
            # create a second contact. The real-time path updates it by id instead.
            enqueue_record_sync(runtime.redis, connection_id, entity, rid, "Email change")
            result.done += 1
            continue
        problems = "; ".join(mapped.problems) or None
        planned[rid] = LinkWrite(rid, LinkStatus.SYNCED, payload.email, digest,
                                 last_error=problems,
                                 synced_values=setup.mapper.dynamics_values(row))
        to_send.append((rid, import_contact(payload, tags, exclude_automations)))

    submitted: list[tuple[str, list[tuple[str, dict]]]] = []
    for batch in batches(to_send):
        try:
            batch_id = submit(ac, limiter, [contact for _, contact in batch])
        except ActiveCampaignError as exc:
            if exc.transient:
                raise
            for rid, _ in batch:
                write = planned.pop(rid)
                write.status = LinkStatus.FAILING
                write.last_error = f"ActiveCampaign refused the import: {exc.message}"
                write.pushed_hash = None
                result.writes.append(write)
                result.failed += 1
            continue
        result.requests += 1
        submitted.append((batch_id, batch))

    infos = confirm(ac, [batch_id for batch_id, _ in submitted])
    result.requests += len(infos)
    for batch_id, batch in submitted:
        info = infos[batch_id]
        failures = {str(e).strip().lower() for e in info.get("failure") or []}
        success = [str(i) for i in info.get("success") or []]
        in_order = len(success) + len(failures) == len(batch)
        ids_iter = iter(success)
        for rid, contact in batch:
            write = planned.pop(rid)
            email = str(contact["email"]).lower()
            if email in failures:
                write.status = LinkStatus.FAILING
                write.last_error = f"ActiveCampaign refused the import of {contact['email']}"
                write.pushed_hash = None
                result.failed += 1
            else:
                # import/info lists the contact ids in batch order; if the counts do not
                # add up the id is resolved later, by email, when something needs it.
                write.ac_contact_id = next(ids_iter, None) if in_order else None
                result.done += 1
                result.pushed += 1
            result.writes.append(write)
    return result
