"""Outbound webhooks: AC's form-encoded event posts and the automation "Webhook" action.

AC posts ``application/x-www-form-urlencoded`` bodies with PHP-style bracket keys, never signs
them, never retries, and deactivates a webhook that answers 410. Deliveries are attempted once,
outside the store lock: API-triggered events go through one background thread (in order, so the
API call that caused them is not slowed down); events fired from test code are sent inline so
the caller can assert on the result immediately.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import requests

from .store import Store, iso, now

# initiated_by as seen in real payloads ("admin" for a user in the UI); the API user is an admin.
INITIATED_BY = {"admin": "admin", "api": "admin", "public": "", "system": "system"}


def flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Turn nested dicts/lists into bracket keys: ``campaign[message][subject]``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}[{key}]" if prefix else str(key), inner, out)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            flatten(f"{prefix}[{index}]", inner, out)
    else:
        out[prefix] = "" if value is None else str(value)


def contact_block(store: Store, contact: dict) -> dict[str, str]:
    """The ``contact[...]`` keys; custom fields keyed by lower-case perstag as AC sends them."""
    body = {
        "contact[id]": str(contact["id"]),
        "contact[email]": contact["email"],
        "contact[first_name]": contact["firstName"],
        "contact[last_name]": contact["lastName"],
        "contact[phone]": contact["phone"],
        "contact[tags]": ", ".join(store.tag_names_of(contact["id"])),
        "contact[ip]": "0",
        "contact[ip4]": "0",
        "contact[orgname]": "",
        "contact[customer_acct_name]": contact.get("customer_acct_name", ""),
    }
    for fv in store.values_of(contact["id"]):
        field = store.fields.get(fv["field"])
        if field:
            body[f"contact[fields][{field['perstag'].lower()}]"] = fv["value"]
    return body


def event_payload(
    store: Store, event_type: str, contact: dict | None, initiated_from: str, extra: dict[str, Any]
) -> dict[str, str]:
    """A webhook event body (facts §9): envelope, contact block, account keys, then extras."""
    body: dict[str, str] = {
        "type": event_type,
        "date_time": iso(now()) or "",
        "initiated_from": initiated_from,
        "initiated_by": INITIATED_BY.get(initiated_from, initiated_from),
        "list": "0",
    }
    if contact is not None:
        body.update(contact_block(store, contact))
    body.update(
        {
            "customer_acct_name": contact.get("customer_acct_name", "") if contact else "",
            "customer_acct_id": "0",
            "orgname": "",
        }
    )
    for key, value in extra.items():
        flatten(key, value, body)
    return body


def automation_payload(store: Store, contact: dict, automation_id: int) -> dict[str, str]:
    """The automation Webhook action body (facts §10): contact block + ``seriesid`` only."""
    body = contact_block(store, contact)
    body["seriesid"] = str(automation_id)
    return body


class WebhookSender:
    """Delivers event posts once each and records the outcome."""

    def __init__(self, store: Store, timeout: float = 5.0) -> None:
        self.store = store
        self.timeout = timeout
        self.deliveries: list[dict] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, str, dict[str, str]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ac-webhooks")
        self._thread.start()

    def targets(self, event_type: str, initiated_from: str) -> list[tuple[int, str]]:
        """Active webhooks listening to this event from this source (caller holds the lock)."""
        return [
            (h["id"], h["url"])
            for h in self.store.webhooks.values()
            if h["active"] and event_type in h["events"] and initiated_from in h["sources"]
        ]

    def post(self, hook_id: int | None, url: str, body: dict[str, str]) -> dict:
        """One attempt, no retry; a 410 deactivates the webhook."""
        record: dict[str, Any] = {
            "webhook": hook_id,
            "url": url,
            "body": body,
            "wall": time.time(),
            "status": None,
            "error": None,
        }
        try:
            response = requests.post(url, data=body, timeout=self.timeout)
            record["status"] = response.status_code
            if response.status_code == 410 and hook_id is not None:
                with self.store.lock:
                    hook = self.store.webhooks.get(hook_id)
                    if hook:
                        hook["active"] = False
        except requests.RequestException as exc:
            record["error"] = str(exc)
        with self._lock:
            self.deliveries.append(record)
        return record

    def enqueue(self, hook_id: int, url: str, body: dict[str, str]) -> None:
        self._queue.put((hook_id, url, body))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued deliveries are done; True if the queue drained in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.deliveries)

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self.post(*item)
            finally:
                self._queue.task_done()

    def close(self) -> None:
        self._queue.put(None)
