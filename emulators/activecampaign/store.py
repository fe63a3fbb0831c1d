"""In-memory state of one emulated ActiveCampaign account.

Records are plain dicts with integer ids; the JSON shapes the API returns are built from them in
``shapes.py`` so that the data model and AC's (string-typed, side-loaded) wire format stay apart.
One re-entrant lock guards everything: request handlers, the bulk-import worker and the Python
facade all take ``store.lock`` around each operation.

Tables that are looked up by something other than their id are ``Table`` objects, which keep
secondary indexes (contacts by lower-case email; contact tags, field values, list memberships,
automation runs and activities by contact; contact tags by tag; field values by field) in step
with every insert and delete, so finding a contact by email or listing one contact's rows costs
O(result), not a scan of every row. The one in-place change an index depends on, a contact's
email, goes through :meth:`Store.update_contact`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

# AC renders dates in the account's timezone; the doc examples use US Central (-05:00/-06:00).
ACCOUNT_TZ = timezone(timedelta(hours=-5))

FIELD_TYPES = {
    "dropdown",
    "hidden",
    "checkbox",
    "date",
    "text",
    "datetime",
    "textarea",
    "NULL",
    "listbox",
    "radio",
    "number",
}
MULTI_VALUE_TYPES = {"checkbox", "listbox"}
WEBHOOK_EVENTS = [
    "bounce",
    "click",
    "contact_tag_added",
    "contact_tag_removed",
    "deal_add",
    "deal_note_add",
    "deal_pipeline_add",
    "deal_stage_add",
    "deal_task_add",
    "deal_task_complete",
    "deal_tasktype_add",
    "deal_update",
    "forward",
    "list_add",
    "open",
    "reply",
    "sent",
    "share",
    "sms_reply",
    "sms_sent",
    "sms_unsub",
    "subscribe",
    "subscriber_note",
    "unsubscribe",
    "update",
]
WEBHOOK_SOURCES = ["public", "admin", "api", "system"]
WRITABLE = {"email", "firstName", "lastName", "phone", "customer_acct_name"}
EMAIL_RE = re.compile(r"^[^@\s'\"]+@[^@\s'\"]+\.[A-Za-z]{2,}$")


def now() -> datetime:
    """Current time in the account timezone, with microseconds (output drops them)."""
    return datetime.now(ACCOUNT_TZ)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 with offset and whole seconds, e.g. ``2018-09-28T13:50:41-05:00``."""
    return value.astimezone(ACCOUNT_TZ).isoformat(timespec="seconds") if value else None


def utc_stamp(value: datetime | None) -> str | None:
    """The ``created_utc_timestamp`` style: ``2018-09-21 12:04:40`` in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else None


def parse_when(text: str | None) -> datetime | None:
    """Parse a filter date (``2024-01-31``, ``2024-01-31 10:00:00`` or ISO with offset).

    Naive values are read in the account timezone, as AC does for ``filters[...]`` dates.
    """
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=ACCOUNT_TZ)


def perstag_for(text: str) -> str:
    """AC's personalisation tag, upper snake case: ``Another Test`` → ``ANOTHER_TEST``."""
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")


def encode_multi(value: Any) -> str:
    """Encode a multi-value answer the way AC stores it: ``||a||b||``."""
    if isinstance(value, list | tuple):
        parts = [str(v) for v in value if str(v) != ""]
        return "||" + "||".join(parts) + "||" if parts else ""
    text = "" if value is None else str(value)
    if text == "" or text.startswith("||"):
        return text
    return f"||{text}||"


def as_int(value: Any) -> int | None:
    """An id from JSON or a query string (``"12"``, ``12``), or None when it is not one."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


class Table(dict):
    """``{id: row}`` that also keeps secondary indexes of its rows.

    ``Table(contact=lambda r: r["contact"])`` indexes rows by contact: :meth:`lookup` returns
    the rows with that key in the order they were inserted, which is the table's own (id)
    order since ids only grow. Every dict mutator keeps the indexes current, so code that
    inserts or deletes rows directly (``table[id] = row``, ``del``, ``pop``) stays correct; a
    row whose indexed value changes in place must be passed to :meth:`rekey`.
    """

    def __init__(self, **keys: Callable[[dict], Any]) -> None:
        super().__init__()
        self._keys = keys
        self._index: dict[str, dict[Any, dict[int, dict]]] = {name: {} for name in keys}

    def lookup(self, name: str, value: Any) -> list[dict]:
        """The rows whose ``name`` key is ``value``, in insertion order."""
        bucket = self._index[name].get(value)
        return list(bucket.values()) if bucket else []

    def count(self, name: str, value: Any) -> int:
        return len(self._index[name].get(value) or ())

    def rekey(self, row_id: int, name: str, old_value: Any) -> None:
        """Move ``row_id`` from ``old_value``'s bucket after its row changed in place."""
        row = dict.get(self, row_id)
        if row is None:
            return
        new_value = self._keys[name](row)
        if new_value == old_value:
            return
        self._drop(name, old_value, row_id)
        self._index[name].setdefault(new_value, {})[row_id] = row

    def _drop(self, name: str, value: Any, row_id: int) -> None:
        index = self._index[name]
        bucket = index.get(value)
        if bucket is not None:
            bucket.pop(row_id, None)
            if not bucket:
                del index[value]

    def _add(self, row_id: int, row: dict) -> None:
        for name, key in self._keys.items():
            self._index[name].setdefault(key(row), {})[row_id] = row

    def _remove(self, row_id: int, row: dict) -> None:
        for name, key in self._keys.items():
            self._drop(name, key(row), row_id)

    def __setitem__(self, row_id: int, row: dict) -> None:
        old = dict.get(self, row_id)
        if old is not None:
            self._remove(row_id, old)
        super().__setitem__(row_id, row)
        self._add(row_id, row)

    def __delitem__(self, row_id: int) -> None:
        row = self[row_id]
        super().__delitem__(row_id)
        self._remove(row_id, row)

    def pop(self, row_id: int, *default: Any) -> Any:
        if row_id not in self:
            return super().pop(row_id, *default)
        row = super().pop(row_id)
        self._remove(row_id, row)
        return row

    def popitem(self) -> tuple[int, dict]:
        row_id, row = super().popitem()
        self._remove(row_id, row)
        return row_id, row

    def setdefault(self, row_id: int, default: Any = None) -> Any:
        if row_id not in self:
            self[row_id] = default
        return self[row_id]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for row_id, row in dict(*args, **kwargs).items():
            self[row_id] = row

    def __ior__(self, other: Any) -> Table:
        self.update(other)
        return self

    def clear(self) -> None:
        super().clear()
        for index in self._index.values():
            index.clear()

    def delete_where(self, name: str, value: Any) -> list[dict]:
        """Delete the rows whose ``name`` key is ``value``; returns them."""
        rows = self.lookup(name, value)
        for row in rows:
            del self[row["id"]]
        return rows


def _email_key(contact: dict) -> str:
    return contact["email"].lower()


def _by(*names: str) -> dict[str, Callable[[dict], Any]]:
    return {name: (lambda row, n=name: row[n]) for name in names}


class Store:
    """Every record of the account, keyed by kind and integer id."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget everything (ids restart at 1)."""
        with self.lock:
            self._next: dict[str, int] = defaultdict(int)
            self.contacts: Table = Table(email=_email_key)
            self.fields: dict[int, dict] = {}
            self.field_options: dict[int, dict] = {}
            self.field_rels: dict[int, dict] = {}
            self.field_values: Table = Table(**_by("contact", "field"))
            self.tags: dict[int, dict] = {}
            self.contact_tags: Table = Table(**_by("contact", "tag"))
            self.lists: dict[int, dict] = {}
            self.contact_lists: Table = Table(**_by("contact"))
            self.automations: dict[int, dict] = {}
            self.contact_automations: Table = Table(**_by("contact"))
            self.campaigns: dict[int, dict] = {}
            self.messages: dict[int, dict] = {}
            self.campaign_messages: dict[int, dict] = {}
            self.links: dict[int, dict] = {}
            self.activities: Table = Table(**_by("contact"))
            self.webhooks: dict[int, dict] = {}

    def next_id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind]

    # -- contacts -------------------------------------------------------------------------

    def contacts_by_email(self, email: str) -> list[dict]:
        """Every contact whose email is ``email`` ignoring case and outer spaces, by id."""
        rows = self.contacts.lookup("email", (email or "").strip().lower())
        return sorted(rows, key=lambda c: c["id"]) if len(rows) > 1 else rows

    def contact_by_email(self, email: str) -> dict | None:
        rows = self.contacts_by_email(email)
        return rows[0] if rows else None

    def create_contact(self, email: str, **attrs: Any) -> dict:
        stamp = now()
        contact = {
            "id": self.next_id("contact"),
            "email": email.strip(),
            "firstName": "",
            "lastName": "",
            "phone": "",
            "cdate": stamp,
            "udate": stamp,
            "sentcnt": 0,
            "customer_acct_name": "",
        }
        contact["hash"] = hashlib.md5(f"{contact['id']}:{email}".encode()).hexdigest()
        self.contacts[contact["id"]] = contact
        self.update_contact(contact, touch=False, **attrs)
        return contact

    def update_contact(self, contact: dict, touch: bool = True, **attrs: Any) -> None:
        """Apply the writable attributes; any write bumps ``udate`` (the incremental cursor)."""
        aliases = {"first_name": "firstName", "last_name": "lastName"}
        old_key = _email_key(contact)
        for key, value in attrs.items():
            key = aliases.get(key, key)
            if value is not None and key in WRITABLE:
                contact[key] = str(value).strip() if key == "email" else str(value)
        if self.contacts.get(contact["id"]) is contact:
            self.contacts.rekey(contact["id"], "email", old_key)
        if touch:
            self.touch(contact)

    def touch(self, contact: dict) -> None:
        contact["udate"] = now()

    def delete_contact(self, contact_id: int) -> None:
        self.contacts.pop(contact_id, None)
        for table in (
            self.field_values,
            self.contact_tags,
            self.contact_lists,
            self.contact_automations,
            self.activities,
        ):
            table.delete_where("contact", contact_id)

    # -- custom fields ----------------------------------------------------------------------

    def field_by_title(self, title: str) -> dict | None:
        wanted = title.strip().lower()
        return next((f for f in self.fields.values() if f["title"].lower() == wanted), None)

    def field_by_ref(self, ref: Any) -> dict | None:
        """A field by id, or by perstag (either case) for seeding convenience."""
        field_id = as_int(ref)
        if field_id is not None:
            return self.fields.get(field_id)
        wanted = perstag_for(str(ref))
        return next((f for f in self.fields.values() if f["perstag"] == wanted), None)

    def create_field(
        self, title: str, type_: str, perstag: str | None = None, **attrs: Any
    ) -> dict:
        tag = perstag_for(perstag or title) or f"FIELD_{len(self.fields) + 1}"
        taken = {f["perstag"] for f in self.fields.values()}
        base, n = tag, 1
        while tag in taken:
            n += 1
            tag = f"{base}_{n}"
        stamp = now()
        field = {
            "id": self.next_id("field"),
            "title": title,
            "type": type_,
            "perstag": tag,
            "descript": attrs.get("descript"),
            "defval": attrs.get("defval"),
            "isrequired": str(attrs.get("isrequired", 0)),
            "show_in_list": str(attrs.get("show_in_list", 0)),
            "rows": str(attrs.get("rows", 0)),
            "cols": str(attrs.get("cols", 0)),
            "visible": str(attrs.get("visible", 1)),
            "service": attrs.get("service", "") or "",
            "ordernum": str(attrs.get("ordernum", len(self.fields) + 1)),
            "cdate": stamp,
            "udate": stamp,
        }
        self.fields[field["id"]] = field
        return field

    def add_field_option(
        self,
        field_id: int,
        value: str,
        label: str | None = None,
        orderid: Any = None,
        isdefault: Any = False,
    ) -> dict:
        stamp = now()
        option = {
            "id": self.next_id("field_option"),
            "field": field_id,
            "value": value,
            "label": label if label is not None else value,
            "orderid": orderid if orderid is not None else len(self.options_of(field_id)) + 1,
            "isdefault": 1 if isdefault in (True, 1, "1", "true") else 0,
            "cdate": stamp,
            "udate": stamp,
        }
        self.field_options[option["id"]] = option
        return option

    def options_of(self, field_id: int) -> list[dict]:
        return [o for o in self.field_options.values() if o["field"] == field_id]

    def rels_of(self, field_id: int) -> list[dict]:
        return [r for r in self.field_rels.values() if r["field"] == field_id]

    def normalize_value(self, field: dict, value: Any) -> str:
        if field["type"] in MULTI_VALUE_TYPES:
            return encode_multi(value)
        return "" if value is None else str(value)

    def set_field_value(self, contact: dict, field: dict, value: Any) -> dict:
        """Upsert the contact's value for ``field`` (one value per contact and field, as in AC)."""
        stamp = now()
        text = self.normalize_value(field, value)
        for fv in self.field_values.lookup("contact", contact["id"]):
            if fv["field"] == field["id"]:
                fv["value"], fv["udate"] = text, stamp
                self.touch(contact)
                return fv
        fv = {
            "id": self.next_id("field_value"),
            "contact": contact["id"],
            "field": field["id"],
            "value": text,
            "cdate": stamp,
            "udate": stamp,
        }
        self.field_values[fv["id"]] = fv
        self.touch(contact)
        return fv

    def values_of(self, contact_id: int) -> list[dict]:
        return self.field_values.lookup("contact", contact_id)

    # -- tags -----------------------------------------------------------------------------

    def tag_by_name(self, name: str) -> dict | None:
        wanted = name.strip().lower()
        return next((t for t in self.tags.values() if t["tag"].lower() == wanted), None)

    def create_tag(self, name: str, tag_type: str = "contact", description: str = "") -> dict:
        tag = {
            "id": self.next_id("tag"),
            "tag": name,
            "tagType": tag_type or "contact",
            "description": description or "",
            "cdate": now(),
        }
        self.tags[tag["id"]] = tag
        return tag

    def ensure_tag(self, name: str) -> dict:
        return self.tag_by_name(name) or self.create_tag(name)

    def find_contact_tag(self, contact_id: int, tag_id: int) -> dict | None:
        return next((ct for ct in self.tags_of(contact_id) if ct["tag"] == tag_id), None)

    def add_contact_tag(self, contact: dict, tag: dict) -> tuple[dict, bool]:
        """Tag the contact; returns the contactTag and whether it is new."""
        existing = self.find_contact_tag(contact["id"], tag["id"])
        if existing:
            return existing, False
        stamp = now()
        row = {
            "id": self.next_id("contact_tag"),
            "contact": contact["id"],
            "tag": tag["id"],
            "cdate": stamp,
            "udate": stamp,
        }
        self.contact_tags[row["id"]] = row
        self.touch(contact)
        return row, True

    def tags_of(self, contact_id: int) -> list[dict]:
        return self.contact_tags.lookup("contact", contact_id)

    def tag_count(self, tag_id: int) -> int:
        """How many contacts carry the tag (``subscriber_count``)."""
        return self.contact_tags.count("tag", tag_id)

    def tag_names_of(self, contact_id: int) -> list[str]:
        return [
            self.tags[ct["tag"]]["tag"] for ct in self.tags_of(contact_id) if ct["tag"] in self.tags
        ]

    # -- lists ----------------------------------------------------------------------------

    def ensure_list(self, list_id: int) -> dict:
        if list_id not in self.lists:
            self.lists[list_id] = {"id": list_id, "name": f"List {list_id}", "cdate": now()}
            self._next["list"] = max(self._next["list"], list_id)
        return self.lists[list_id]

    def set_list_status(self, contact: dict, list_id: int, status: int) -> dict:
        """Subscribe (1) or unsubscribe (2) the contact on a list."""
        self.ensure_list(list_id)
        stamp = now()
        for row in self.contact_lists.lookup("contact", contact["id"]):
            if row["list"] == list_id:
                row["status"], row["udate"] = status, stamp
                return row
        row = {
            "id": self.next_id("contact_list"),
            "contact": contact["id"],
            "list": list_id,
            "status": status,
            "sdate": stamp,
            "udate": stamp,
        }
        self.contact_lists[row["id"]] = row
        return row

    def lists_of(self, contact_id: int) -> list[dict]:
        return self.contact_lists.lookup("contact", contact_id)

    # -- automations ----------------------------------------------------------------------

    def create_automation(self, name: str, status: str = "1") -> dict:
        stamp = now()
        automation = {
            "id": self.next_id("automation"),
            "name": name,
            "status": str(status),
            "cdate": stamp,
            "mdate": stamp,
            "entered": 0,
            "exited": 0,
        }
        self.automations[automation["id"]] = automation
        return automation

    def add_contact_automation(self, contact: dict, automation: dict) -> dict:
        stamp = now()
        row = {
            "id": self.next_id("contact_automation"),
            "contact": contact["id"],
            "automation": automation["id"],
            "status": 1,
            "adddate": stamp,
            "remdate": None,
            "lastdate": stamp,
        }
        self.contact_automations[row["id"]] = row
        automation["entered"] += 1
        self.add_activity(
            contact["id"],
            "SubscriberSeries",
            row["id"],
            "start",
            "subscriber-series",
            {"automation": str(automation["id"]), "name": automation["name"]},
        )
        return row

    def automations_of(self, contact_id: int) -> list[dict]:
        return self.contact_automations.lookup("contact", contact_id)

    def activities_of(self, contact_id: int) -> list[dict]:
        return self.activities.lookup("contact", contact_id)

    # -- campaigns ------------------------------------------------------------------------

    def create_campaign(
        self,
        name: str,
        status: str = "5",
        type_: str = "single",
        message_subject: str | None = None,
        **attrs: Any,
    ) -> dict:
        stamp = now()
        campaign = {
            "id": self.next_id("campaign"),
            "name": name,
            "status": str(status),
            "type": type_,
            "cdate": stamp,
            "mdate": stamp,
            "sdate": stamp if str(status) in {"1", "2", "5"} else None,
            "ldate": stamp if str(status) == "5" else None,
            "send_amt": 0,
            "opens": 0,
            "linkclicks": 0,
            "seriesid": int(attrs.get("seriesid", 0) or 0),
        }
        self.campaigns[campaign["id"]] = campaign
        message = {
            "id": self.next_id("message"),
            "subject": message_subject or name,
            "name": message_subject or name,
            "fromname": attrs.get("fromname", "Sales"),
            "fromemail": attrs.get("fromemail", "sales@example.com"),
            "cdate": stamp,
            "mdate": stamp,
        }
        self.messages[message["id"]] = message
        row = {
            "id": self.next_id("campaign_message"),
            "campaign": campaign["id"],
            "message": message["id"],
            "send_amt": 0,
        }
        self.campaign_messages[row["id"]] = row
        self.add_link(campaign["id"], message["id"], "open", "Read Tracker")
        for url in attrs.get("links", []) or []:
            self.add_link(campaign["id"], message["id"], url, url)
        return campaign

    def add_link(self, campaign_id: int, message_id: int, link: str, name: str) -> dict:
        row = {
            "id": self.next_id("link"),
            "campaign": campaign_id,
            "message": message_id,
            "link": link,
            "name": name,
        }
        self.links[row["id"]] = row
        return row

    def messages_of(self, campaign_id: int) -> list[dict]:
        return [r for r in self.campaign_messages.values() if r["campaign"] == campaign_id]

    # -- activities -----------------------------------------------------------------------

    def add_activity(
        self,
        contact_id: int,
        reference_type: str,
        reference_id: int,
        reference_action: str,
        model_name: str,
        data: dict | None = None,
    ) -> dict:
        row = {
            "id": self.next_id("activity"),
            "contact": contact_id,
            "tstamp": now(),
            "reference_type": reference_type,
            "reference_id": reference_id,
            "reference_action": reference_action,
            "model_name": model_name,
            "data": data,
        }
        self.activities[row["id"]] = row
        return row

    # -- webhooks -------------------------------------------------------------------------

    def create_webhook(
        self, name: str, url: str, events: list[str], sources: list[str], listid: Any = 0
    ) -> dict:
        hook = {
            "id": self.next_id("webhook"),
            "name": name,
            "url": url,
            "events": list(events),
            "sources": list(sources),
            "listid": as_int(listid) or 0,
            "cdate": now(),
            "active": True,
        }
        self.webhooks[hook["id"]] = hook
        return hook
