"""Sales actions (Add to Automation, Send Campaign): the parts the web process and workers share.

A sales user picks an automation or campaign in a dialog; the bridge answers
``202`` with an action id at once and an RQ job on the ``actions`` queue does
the work record by record (``workers.actions.run_action``). The ``ActionLog``
row is the single source of truth for progress: ``results`` maps each record
id to ``{"status", "detail", "ac_contact_id", "updated_at"}`` and is rewritten
after every record, so the dialog can poll it.

Lists of automations and campaigns are cached briefly per connection in Redis
(the dialog is opened often, the lists change rarely).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import redis as redis_lib

from bridge.clients import ActiveCampaignClient, ActiveCampaignError

ADD_TO_AUTOMATION = "add_to_automation"
SEND_CAMPAIGN = "send_campaign"
ACTIONS = (ADD_TO_AUTOMATION, SEND_CAMPAIGN)
ENTITIES = ("lead", "contact")
MAX_RECORDS = 250

LIST_CACHE_SECONDS = 60
IDEMPOTENCY_SECONDS = 24 * 3600
# Two users (or two dialogs) sending the same campaign to the same contact within this
# window get "already sent" instead of a second email.
CAMPAIGN_DEDUPE_SECONDS = 600

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class RecordStatus:
    """Values of ``ActionLog.results[record]["status"]``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ALREADY_IN_AUTOMATION = "already_in_automation"
    ALREADY_SENT = "already_sent"
    SKIPPED_NO_EMAIL = "skipped_no_email"
    SKIPPED_EXCLUDED = "skipped_excluded"
    FAILED = "failed"

    PENDING = frozenset({QUEUED, RUNNING})
    ALL = (
        QUEUED, RUNNING, DONE, ALREADY_IN_AUTOMATION, ALREADY_SENT,
        SKIPPED_NO_EMAIL, SKIPPED_EXCLUDED, FAILED,
    )


class ActionStatus:
    """Values of ``ActionLog.status``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # every record reached a final state (see the per-record results)


def normalise_record_ids(values: Iterable[Any]) -> tuple[list[str], dict[str, str]]:
    """Record ids as the bridge stores them (no braces, lower case, no duplicates, in order),
    and ``{position: problem}`` for the values that are not GUIDs."""
    ids: list[str] = []
    problems: dict[str, str] = {}
    for index, value in enumerate(values):
        text = str(value if value is not None else "").strip().strip("{}").strip().lower()
        if not isinstance(value, str) or not _GUID.match(text):
            problems[str(index)] = f"not a record id: {str(value)[:60]!r}"
            continue
        if text not in ids:
            ids.append(text)
    return ids, problems


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- cached lists ---------------------------------------------------------------------------


def _list_key(connection_id: int, kind: str) -> str:
    return f"ac:list:{connection_id}:{kind}"


def forget_lists(redis: redis_lib.Redis, connection_id: int) -> None:
    redis.delete(_list_key(connection_id, "automations"), _list_key(connection_id, "campaigns"))


def _cached(redis: redis_lib.Redis, key: str, load, refresh: bool) -> list[dict]:
    if not refresh:
        raw = redis.get(key)
        if raw:
            return json.loads(raw)
    value = load()
    redis.set(key, json.dumps(value), ex=LIST_CACHE_SECONDS)
    return value


def _automation_item(row: dict) -> dict:
    status = str(row.get("status") or "")
    return {
        "id": str(row.get("id")),
        "name": str(row.get("name") or f"Automation {row.get('id')}"),
        "status": "active" if status == "1" else "inactive",
        "active": status == "1",
        "entered": int(row.get("entered") or 0),
        "modified_at": row.get("mdate") or None,
    }


def automations(
    redis: redis_lib.Redis,
    connection_id: int,
    ac: ActiveCampaignClient,
    search: str | None = None,
    refresh: bool = False,
) -> list[dict]:
    """The account's automations, active ones first then by name; ``search`` matches names."""
    items = _cached(
        redis,
        _list_key(connection_id, "automations"),
        lambda: [_automation_item(a) for a in ac.list_automations() if str(a.get("hidden")) != "1"],
        refresh,
    )
    if search:
        wanted = search.strip().lower()
        items = [a for a in items if wanted in a["name"].lower()]
    return sorted(items, key=lambda a: (not a["active"], a["name"].lower(), int(a["id"] or 0)))


# AC campaign types and statuses (v1 campaign_status): 0 draft, 1 scheduled, 2 sending,
# 3 paused, 4 stopped, 5 completed. A campaign can be sent to one contact when it is a
# one-off email whose message is final: single or split, and not a draft.
SENDABLE_TYPES = frozenset({"single", "split"})
CAMPAIGN_STATUSES = {
    "0": "draft",
    "1": "scheduled",
    "2": "sending",
    "3": "paused",
    "4": "stopped",
    "5": "completed",
}
SENDABLE_STATUSES = frozenset({"1", "2", "3", "5"})


def _blank_date(value: Any) -> str | None:
    text = str(value or "")
    return None if not text or text.startswith("0000") else text


def _campaign_item(row: dict) -> dict:
    status = str(row.get("status") or "")
    return {
        "id": str(row.get("id")),
        "name": str(row.get("name") or f"Campaign {row.get('id')}"),
        "status": CAMPAIGN_STATUSES.get(status, status or "unknown"),
        "type": str(row.get("type") or ""),
        "last_sent_at": _blank_date(row.get("ldate")) or _blank_date(row.get("sdate")),
        "sendable": str(row.get("type")) in SENDABLE_TYPES and status in SENDABLE_STATUSES,
    }


def campaigns(
    redis: redis_lib.Redis,
    connection_id: int,
    ac: ActiveCampaignClient,
    search: str | None = None,
    refresh: bool = False,
    include_unsendable: bool = False,
) -> list[dict]:
    """Campaigns that can be sent to one contact, most recently sent first."""
    items = _cached(
        redis,
        _list_key(connection_id, "campaigns"),
        lambda: [_campaign_item(c) for c in ac.list_campaigns()],
        refresh,
    )
    if not include_unsendable:
        items = [c for c in items if c["sendable"]]
    if search:
        wanted = search.strip().lower()
        items = [c for c in items if wanted in c["name"].lower()]
    return sorted(items, key=lambda c: (c["last_sent_at"] or "", int(c["id"] or 0)), reverse=True)


def find_target(
    redis: redis_lib.Redis,
    connection_id: int,
    ac: ActiveCampaignClient,
    action: str,
    target_id: str,
) -> dict | None:
    """The automation or campaign ``target_id`` (from the cache, re-read once if it is missing)."""
    for refresh in (False, True):
        if action == ADD_TO_AUTOMATION:
            items = automations(redis, connection_id, ac, refresh=refresh)
        else:
            items = campaigns(redis, connection_id, ac, refresh=refresh, include_unsendable=True)
        for item in items:
            if item["id"] == target_id:
                return item
    return None


# --- idempotency ----------------------------------------------------------------------------


def idempotency_key(connection_id: int, user_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{user_id}\0{key}".encode()).hexdigest()
    return f"action:idem:{connection_id}:{digest}"


def request_fingerprint(action: str, entity: str, record_ids: list[str], target_id: str) -> str:
    raw = json.dumps([action, entity, sorted(record_ids), target_id])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# --- timeline cache invalidation ------------------------------------------------------------


def contact_changed(redis: redis_lib.Redis, connection_id: int, contact_id: str | None) -> None:
    """The bridge changed this contact in ActiveCampaign: drop its cached timeline."""
    if contact_id:
        from bridge.timeline import invalidate

        invalidate(redis, connection_id, str(contact_id))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ActiveCampaignError):
        if exc.transient:
            return f"ActiveCampaign did not answer; try again later ({exc.message})"
        return f"ActiveCampaign refused: {exc.message}"
    return f"internal error ({type(exc).__name__}); see the worker log"
