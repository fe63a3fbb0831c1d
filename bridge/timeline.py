"""The marketing-activity timeline of one Dynamics lead or contact.

``record_timeline`` resolves the record's ActiveCampaign contact (the ledger
first; otherwise by the record's email, which then links it), reads one page of
``GET /api/3/activities`` with the side-loads that name campaigns and
automations, and turns each activity into one stable item::

    {"id", "kind", "icon", "text", "occurred_at", "ac_url", "link_url",
     "campaign", "automation", "source": {"reference_type", "reference_action"}}

``kind`` is one of ``KINDS``. Pages are cached per contact for
``CACHE_SECONDS``; ``invalidate`` (called whenever the bridge itself changes
the contact) bumps a generation counter so the next read is fresh.

ActiveCampaign documents the ``reference_type`` values but not the shape of
``jsonData`` per type; the mapping below reads the names it needs from
``jsonData`` and the side-loads, and falls back to a generic sentence for any
type it does not know, so a new kind of activity is shown, never dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis as redis_lib
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bridge.clients import ActiveCampaignClient, DataverseClient, DataverseNotFound
from bridge.mapping import entity_info
from bridge.models import Connection, EntityConfig, LinkStatus, RecordLink, utcnow
from bridge.runtime import Runtime

CACHE_SECONDS = 60
DEFAULT_PAGE = 20
MAX_PAGE = 100  # ActiveCampaign's page limit
INCLUDE = ",".join(
    [
        "reference.automation",
        "reference.campaign",
        "reference.campaignMessage",
        "reference.link",
        "reference.list",
        "reference.log.campaign",
        "reference.log.message",
    ]
)

KINDS = (
    "email_sent",
    "email_opened",
    "email_clicked",
    "automation_entered",
    "automation_completed",
    "tag_added",
    "tag_removed",
    "list_subscribed",
    "list_unsubscribed",
    "site_visit",
    "event",
    "note",
    "other",
)
ICONS = {
    "email_sent": "send",
    "email_opened": "open",
    "email_clicked": "click",
    "automation_entered": "automation",
    "automation_completed": "automation-done",
    "tag_added": "tag",
    "tag_removed": "tag-off",
    "list_subscribed": "list",
    "list_unsubscribed": "list-off",
    "site_visit": "globe",
    "event": "bolt",
    "note": "note",
    "other": "dot",
}

# States of a record that has no activity to show, and why.
REASONS = {
    "no_email": "This record has no email address, so it is not in ActiveCampaign.",
    "excluded": "This record is excluded from sync by the ActiveCampaign sync criteria.",
    "sync_off": "Sync to ActiveCampaign is turned off by an administrator.",
    "table_off": "Sync of this table to ActiveCampaign is turned off by an administrator.",
    "failing": "This record could not be synced to ActiveCampaign.",
    "not_synced_yet": "This record has not been synced to ActiveCampaign yet.",
}


class RecordNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Contact:
    id: str
    email: str | None


# --- cache ----------------------------------------------------------------------------------


def _generation_key(connection_id: int, contact_id: str) -> str:
    return f"timeline:gen:{connection_id}:{contact_id}"


def invalidate(redis: redis_lib.Redis, connection_id: int, contact_id: str) -> None:
    """Forget every cached page of this contact's timeline."""
    redis.incr(_generation_key(connection_id, contact_id))
    redis.expire(_generation_key(connection_id, contact_id), 24 * 3600)


def _page_key(redis: redis_lib.Redis, connection_id: int, contact_id: str, offset: int,
              limit: int) -> str:
    generation = int(redis.get(_generation_key(connection_id, contact_id)) or 0)
    return f"timeline:page:{connection_id}:{contact_id}:{generation}:{offset}:{limit}"


# --- links into ActiveCampaign ---------------------------------------------------------------

_API_HOST = re.compile(r"^([a-z0-9-]+)\.api-us\d+\.com$")


def app_base_url(api_url: str) -> str:
    """``https://acme.api-us1.com`` → ``https://acme.activehosted.com`` (the web app)."""
    parts = urlsplit(api_url)
    match = _API_HOST.match(parts.hostname or "")
    if match:
        return f"https://{match.group(1)}.activehosted.com"
    return api_url.rstrip("/")


# --- resolving the contact ------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    contact: Contact | None
    reason_code: str | None = None
    reason: str | None = None


def _link(session, connection_id: int, entity: str, record_id: str) -> RecordLink | None:
    return session.scalar(
        select(RecordLink).where(
            RecordLink.connection_id == connection_id,
            RecordLink.entity == entity,
            RecordLink.dynamics_id == record_id,
        )
    )


def _save_found_link(runtime: Runtime, connection_id: int, entity: str, record_id: str,
                     contact_id: str, email: str) -> None:
    """Link a record to the contact found by its email; the next sync pushes it (pending)."""
    try:
        with runtime.db.session() as session:
            link = _link(session, connection_id, entity, record_id)
            if link is None:
                link = RecordLink(connection_id=connection_id, entity=entity,
                                  dynamics_id=record_id, status=LinkStatus.PENDING)
                session.add(link)
            if not link.ac_contact_id:
                link.ac_contact_id = contact_id
                link.email = email
                link.updated_at = utcnow()
    except IntegrityError:
        pass  # a sync worker linked it at the same moment


def resolve_contact(
    runtime: Runtime, connection: Connection, ac: ActiveCampaignClient, dv: DataverseClient,
    entity: str, record_id: str,
) -> Resolution:
    info = entity_info(entity)
    with runtime.db.session() as session:
        link = _link(session, connection.id, entity, record_id)
        link_state = (
            (link.ac_contact_id, link.email, link.status, link.last_error) if link else None
        )
        config = session.scalar(
            select(EntityConfig).where(
                EntityConfig.connection_id == connection.id, EntityConfig.entity == entity
            )
        )
        table_enabled = config.enabled if config is not None else True
    if link_state and link_state[0]:
        return Resolution(Contact(link_state[0], link_state[1]))

    try:
        row = dv.get(info.entity_set, record_id, select=[info.primary_key, "emailaddress1"])
    except DataverseNotFound:
        raise RecordNotFound(record_id) from None
    email = str(row.get("emailaddress1") or "").strip().lower() or None
    if email is None:
        return Resolution(None, "no_email", REASONS["no_email"])
    found = ac.find_contact_by_email(email)
    if found and found.get("id"):
        _save_found_link(runtime, connection.id, entity, record_id, str(found["id"]), email)
        return Resolution(Contact(str(found["id"]), email))
    if not connection.global_sync_enabled:
        return Resolution(None, "sync_off", REASONS["sync_off"])
    if not table_enabled:
        return Resolution(None, "table_off", REASONS["table_off"])
    if link_state and link_state[2] == LinkStatus.EXCLUDED:
        detail = link_state[3] or ""
        if "email" in detail.lower():
            return Resolution(None, "no_email", REASONS["no_email"])
        text = REASONS["excluded"] + (f" ({detail})" if detail else "")
        return Resolution(None, "excluded", text)
    if link_state and link_state[2] == LinkStatus.FAILING:
        detail = link_state[3] or ""
        return Resolution(None, "failing", REASONS["failing"] + (f" {detail}" if detail else ""))
    return Resolution(None, "not_synced_yet", REASONS["not_synced_yet"])


# --- normalising activities ------------------------------------------------------------------


def _utc(value: Any) -> str | None:
    text = str(value or "").strip()
    if not text or text.startswith("0000"):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _data(activity: dict) -> dict:
    raw = activity.get("jsonData", activity.get("json_data"))
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    return raw if isinstance(raw, dict) else {}


def _quoted(name: str | None, fallback: str) -> str:
    return f"'{name}'" if name else fallback


class _Names:
    """Names from the side-loads (``campaigns``, ``automations``, ``lists``, ``links``)."""

    def __init__(self, body: dict) -> None:
        def index(key: str, field: str) -> dict[str, str]:
            return {
                str(row.get("id")): str(row.get(field) or "")
                for row in body.get(key) or []
                if isinstance(row, dict)
            }

        self.campaigns = index("campaigns", "name")
        self.automations = index("automations", "name")
        self.lists = index("lists", "name")
        self.links = index("links", "link")


def normalise(activity: dict, names: _Names, app_url: str) -> dict:
    """One ActiveCampaign activity as a timeline item (see the module docstring)."""
    data = _data(activity)
    rtype = str(activity.get("reference_type") or "")
    raction = str(activity.get("reference_action") or "").lower()
    campaign_id = str(data.get("campaign") or data.get("campaignid") or "") or None
    campaign = (names.campaigns.get(campaign_id or "") or data.get("name")
                or data.get("campaign_name") or None) if campaign_id else None
    subject = data.get("subject") or None
    automation_id = str(data.get("automation") or data.get("seriesid") or "") or None
    automation = (names.automations.get(automation_id or "") or data.get("name")
                  or None) if automation_id else None
    link_url = None
    ac_url = None
    kind = "other"
    text = ""

    if rtype in ("Log", "SubscriberEmail") and raction in ("", "sent", "send"):
        kind = "email_sent"
        if campaign_id:
            text = f"Was sent the campaign {_quoted(campaign, 'email')}"
            if subject and subject != campaign:
                text += f" (“{subject}”)"
        else:
            text = f"Was sent an email{f' “{subject}”' if subject else ''}"
    elif rtype == "Log" and raction in ("open", "read", "opened"):
        kind = "email_opened"
        text = f"Opened {_quoted(campaign or subject, 'an email')}"
    elif rtype in ("LinkData", "MppLinkData") or raction in ("click", "clicked"):
        kind = "email_clicked"
        link_url = data.get("url") or data.get("link") or names.links.get(
            str(activity.get("reference_id") or "")) or None
        where = f" in {_quoted(campaign, 'an email')}" if campaign or campaign_id else ""
        text = f"Clicked {link_url or 'a link'}{where}"
    elif rtype in ("SubscriberSeries", "SeriesBlock"):
        done = raction in ("complete", "completed", "end", "ended", "finish")
        kind = "automation_completed" if done else "automation_entered"
        verb = "Completed" if done else "Entered"
        text = f"{verb} automation {_quoted(automation, 'an automation')}"
    elif rtype in ("SubscriberTag", "ContactTag", "Tag"):
        removed = raction in ("remove", "removed", "delete", "deleted")
        kind = "tag_removed" if removed else "tag_added"
        tag = data.get("tag") or data.get("name") or "a tag"
        text = f"Tag '{tag}' {'removed' if removed else 'added'}"
    elif rtype in ("SubscriberList", "SmsUnsub") or raction in ("subscribe", "unsubscribe"):
        off = raction in ("unsubscribe", "unsubscribed") or rtype == "SmsUnsub"
        kind = "list_unsubscribed" if off else "list_subscribed"
        list_id = str(data.get("list") or data.get("listid") or "")
        list_name = names.lists.get(list_id) or data.get("list_name") or data.get("name")
        verb = "Unsubscribed from" if off else "Subscribed to"
        text = f"{verb} list {_quoted(list_name, 'a list')}"
    elif rtype == "TrackingLog":
        event_type = str(data.get("type") or "")
        value = data.get("value") or data.get("url") or ""
        if event_type.lower() in ("", "page", "pageview", "page visit", "visit", "site"):
            kind = "site_visit"
            link_url = value or None
            text = f"Visited {value or 'your website'}"
        else:
            kind = "event"
            text = f"Event '{event_type}'" + (f": {value}" if value else "")
    elif rtype == "Note":
        kind = "note"
        text = "Note: " + str(data.get("note") or data.get("text") or "added")[:300]
    else:
        readable = re.sub(r"(?<!^)(?=[A-Z])", " ", rtype).lower() or "activity"
        text = f"ActiveCampaign {readable}" + (f" ({raction})" if raction else "")

    if campaign_id and kind.startswith("email"):
        ac_url = f"{app_url}/report/#/campaign/{campaign_id}/overview"
    elif automation_id and kind.startswith("automation"):
        ac_url = f"{app_url}/series/{automation_id}"
    return {
        "id": str(activity.get("id") or ""),
        "kind": kind,
        "icon": ICONS[kind],
        "text": text,
        "occurred_at": _utc(activity.get("tstamp")),
        "ac_url": ac_url,
        "link_url": link_url,
        "campaign": {"id": campaign_id, "name": campaign} if campaign_id else None,
        "automation": (
            {"id": automation_id, "name": automation} if automation_id else None
        ),
        "source": {"reference_type": rtype, "reference_action": raction},
    }


def activity_page(
    runtime: Runtime, connection_id: int, ac: ActiveCampaignClient, contact: Contact,
    offset: int, limit: int,
) -> dict:
    """One page of normalised items, newest first (cached per contact)."""
    key = _page_key(runtime.redis, connection_id, contact.id, offset, limit)
    cached = runtime.redis.get(key)
    if cached:
        return json.loads(cached)
    body = ac.activities(
        contact.id, include=INCLUDE, limit=limit, offset=offset, **{"orders[tstamp]": "DESC"}
    )
    names = _Names(body)
    app_url = app_base_url(ac.api_url)
    items = [normalise(a, names, app_url) for a in body.get("activities") or []]
    items.sort(key=lambda i: (i["occurred_at"] or "", int(i["id"] or 0)
                              if str(i["id"]).isdigit() else 0), reverse=True)
    try:
        total = int((body.get("meta") or {}).get("total"))
    except (TypeError, ValueError):
        total = offset + len(items) + (1 if len(items) >= limit else 0)
    page = {
        "items": items,
        "total": total,
        "offset": offset,
        "limit": limit,
        "has_more": offset + len(items) < total and len(items) > 0,
        "next_offset": offset + len(items) if offset + len(items) < total else None,
        "contact_url": f"{app_url}/app/contacts/{contact.id}",
    }
    runtime.redis.set(key, json.dumps(page), ex=CACHE_SECONDS)
    return page
