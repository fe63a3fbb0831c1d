"""POST /import/bulk_import: validation, per-minute limits and asynchronous processing.

AC queues a bulk import and processes it later; clients poll ``GET /import/info?batchId=``.
The emulator processes each batch on a short timer thread so tests see the same
queued → completed sequence without waiting. Imports do not fire webhooks (mass operations
never do) and take tags by name, auto-creating them.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

from .ratelimit import SlidingWindow
from .store import EMAIL_RE, Store, as_int, now

MAX_CONTACTS = 250
MAX_BYTES = 400_000  # "must be less than 400K bytes (399,999 bytes or less)"
VALIDATION_MESSAGE = (
    "JSON payload did not pass validation. Please fix failure Reasons and "
    "retry. The import was not queued for processing."
)
MULTI_LIMIT_REASON = (
    "Up to 100 imports may be requested per minute.Please batch contacts into "
    "larger requests, or retry this request in a minute."
)
SINGLE_LIMIT_REASON = (
    "Up to 20 single-contact imports may be requested per minute.Please batch "
    "contacts into larger requests, or retry this request in a minute."
)


def _fail(reasons: list[Any], message: str = VALIDATION_MESSAGE) -> tuple[dict, int]:
    return {"success": 0, "message": message, "failureReasons": reasons}, 400


class BulkImporter:
    """Holds the batches and the two per-minute windows of one account."""

    def __init__(
        self,
        store: Store,
        multi_per_minute: int = 100,
        single_per_minute: int = 20,
        window_seconds: float = 60.0,
        delay_seconds: float = 0.01,
    ) -> None:
        self.store = store
        self.multi = SlidingWindow(multi_per_minute, window_seconds)
        self.single = SlidingWindow(single_per_minute, window_seconds)
        self.delay_seconds = delay_seconds
        self.batches: dict[str, dict] = {}

    def submit(self, raw_size: int, payload: Any) -> tuple[dict, int]:
        """Validate and queue one request; returns (body, status) exactly as AC words them."""
        if raw_size >= MAX_BYTES:
            return _fail(
                [
                    f"Payload size of {raw_size} bytes exceeds the maximum: the payload "
                    "must be less than 400K bytes (399,999 bytes or less)."
                ]
            )
        contacts = payload.get("contacts") if isinstance(payload, dict) else None
        if not isinstance(contacts, list) or not contacts:
            return _fail(["'contacts' must be a non-empty array of contact objects."])
        if len(contacts) > MAX_CONTACTS:
            return _fail(
                [
                    f"Contacts can be imported in batches of up to {MAX_CONTACTS} items. "
                    f"This request contains {len(contacts)}."
                ]
            )
        reasons = []
        for index, item in enumerate(contacts):
            email = item.get("email") if isinstance(item, dict) else None
            if not isinstance(email, str) or "@" not in email:
                reasons.append(
                    {"contact": index, "failureReason": "Field‘ email’ incorrect format"}
                )
        if reasons:
            return _fail(reasons)
        window, reason = (
            (self.single, SINGLE_LIMIT_REASON)
            if len(contacts) == 1
            else (self.multi, MULTI_LIMIT_REASON)
        )
        admitted, _ = window.try_acquire()
        if not admitted:
            return _fail([reason], "Rate limit exceeded.")
        batch_id = str(uuid.uuid4())
        with self.store.lock:
            self.batches[batch_id] = {
                "id": batch_id,
                "contacts": contacts,
                "status": "queued",
                "success": [],
                "failure": [],
                "queued": now(),
                "completed": None,
            }
        timer = threading.Timer(self.delay_seconds, self.process, args=(batch_id,))
        timer.daemon = True
        timer.start()
        return {
            "Success": 1,
            "queued_contacts": len(contacts),
            "batchId": batch_id,
            "message": "Contact import queued",
        }, 200

    def process(self, batch_id: str) -> None:
        """Upsert every contact of the batch by email; invalid addresses land in ``failure``."""
        with self.store.lock:
            batch = self.batches.get(batch_id)
            if not batch or batch["status"] == "completed":
                return
            for item in batch["contacts"]:
                email = str(item.get("email", "")).strip()
                if not EMAIL_RE.match(email):
                    batch["failure"].append(email)
                    continue
                contact_id = self._import_one(item, email)
                batch["success"].append(str(contact_id))
            batch["status"], batch["completed"] = "completed", now()

    def _import_one(self, item: dict, email: str) -> int:
        store = self.store
        attrs = {
            k: item[k]
            for k in ("first_name", "last_name", "phone", "customer_acct_name")
            if item.get(k) is not None
        }
        contact = store.contact_by_email(email)
        if contact is None:
            contact = store.create_contact(email, **attrs)
        else:
            store.update_contact(contact, **attrs)
        for name in item.get("tags") or []:
            if str(name).strip():
                store.add_contact_tag(contact, store.ensure_tag(str(name).strip()))
        for entry in item.get("fields") or []:
            field = store.fields.get(as_int(entry.get("id"))) if isinstance(entry, dict) else None
            if field is not None:
                store.set_field_value(contact, field, entry.get("value"))
        for key, status in (("subscribe", 1), ("unsubscribe", 2)):
            for entry in item.get(key) or []:
                list_id = as_int(entry.get("listid")) if isinstance(entry, dict) else None
                if list_id:
                    store.set_list_status(contact, list_id, status)
        return contact["id"]

    def info(self, batch_id: str | None) -> tuple[dict, int]:
        if not batch_id:
            return {"success": 0, "message": "'batchId' is a required field."}, 400
        with self.store.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return {"success": 0, "message": f"No batch found with batchId {batch_id}"}, 404
            return {
                "status": batch["status"],
                "success": list(batch["success"]),
                "failure": list(batch["failure"]),
            }, 200

    def overview(self) -> dict:
        """GET /import/bulk_import: batch and contact counts per day, as strings."""
        outstanding: Counter[str] = Counter()
        outstanding_contacts: Counter[str] = Counter()
        done: Counter[str] = Counter()
        done_contacts: Counter[str] = Counter()
        with self.store.lock:
            for batch in self.batches.values():
                day = batch["queued"].date().isoformat()
                if batch["status"] == "completed":
                    done[day] += 1
                    done_contacts[day] += len(batch["contacts"])
                else:
                    outstanding[day] += 1
                    outstanding_contacts[day] += len(batch["contacts"])
        return {
            "outstanding": [
                {"forDate": d, "batches": str(n), "contacts": str(outstanding_contacts[d])}
                for d, n in sorted(outstanding.items())
            ],
            "recentlyCompleted": [
                {"forDate": d, "batches": str(n), "contacts": str(done_contacts[d])}
                for d, n in sorted(done.items())
            ],
        }
