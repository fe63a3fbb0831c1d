"""Render store records in ActiveCampaign's wire format.

AC's JSON is idiosyncratic (ids and counters as strings, a few endpoints echoing request ints,
legacy ``0000-00-00`` dates, side-loaded arrays), and clients depend on those details, so each
shape here follows the official doc example of the endpoint that returns it. ``base`` is the
emulator's ``…/api/3`` URL, used for ``links`` the way AC points them at the account host.
"""

from __future__ import annotations

from typing import Any

from .store import Store, iso, utc_stamp

CONTACT_LINKS = [
    "bounceLogs",
    "contactAutomations",
    "contactData",
    "contactGoals",
    "contactLists",
    "contactLogs",
    "contactTags",
    "contactDeals",
    "deals",
    "fieldValues",
    "geoIps",
    "notes",
    "organization",
    "plusAppend",
    "trackingLogs",
    "scoreValues",
]
# POST /contact/sync shows two more links than the other contact shapes.
SYNC_EXTRA_LINKS = ["accountContacts", "automationEntryCounts"]

CAMPAIGN_DEFAULTS: dict[str, Any] = {
    "userid": "1",
    "segmentid": "0",
    "bounceid": "-1",
    "realcid": "0",
    "sendid": "0",
    "threadid": "0",
    "formid": "0",
    "basetemplateid": "",
    "basemessageid": "0",
    "addressid": "0",
    "source": "web",
    "total_amt": "0",
    "uniqueopens": "0",
    "uniquelinkclicks": "0",
    "subscriberclicks": "0",
    "forwards": "0",
    "uniqueforwards": "0",
    "hardbounces": "0",
    "softbounces": "0",
    "unsubscribes": "0",
    "unsubreasons": "0",
    "updates": "0",
    "socialshares": "0",
    "replies": "0",
    "uniquereplies": "0",
    "public": "1",
    "mail_transfer": "0",
    "mail_send": "0",
    "mail_cleanup": "0",
    "mailer_log_file": "0",
    "tracklinks": "all",
    "tracklinksanalytics": "0",
    "trackreads": "1",
    "trackreadsanalytics": "1",
    "analytics_campaign_name": "",
    "tweet": "0",
    "facebook": "0",
    "survey": "",
    "embed_images": "0",
    "htmlunsub": "0",
    "textunsub": "0",
    "htmlunsubdata": None,
    "textunsubdata": None,
    "recurring": "day1",
    "willrecur": "0",
    "split_type": "even",
    "split_content": "0",
    "split_offset": "2",
    "split_offset_type": "day",
    "split_winner_messageid": "0",
    "split_winner_awaiting": "0",
    "responder_offset": "0",
    "responder_type": "subscribe",
    "responder_existing": "0",
    "reminder_field": "sdate",
    "reminder_format": None,
    "reminder_type": "month_day",
    "reminder_offset": "0",
    "reminder_offset_type": "day",
    "reminder_offset_sign": "+",
    "reminder_last_cron_run": None,
    "activerss_interval": "day1",
    "activerss_url": None,
    "activerss_items": "10",
    "ip4": "0",
    "laststep": "designer",
    "managetext": "0",
    "schedule": "0",
    "scheduleddate": None,
    "waitpreview": "0",
    "deletestamp": None,
    "replysys": "0",
}


def _links(base: str, kind: str, record_id: int, names: list[str]) -> dict[str, str]:
    return {name: f"{base}/{kind}/{record_id}/{name}" for name in names}


def contact_full(store: Store, c: dict, base: str) -> dict:
    """The contact object of GET /contacts, PUT /contacts/{id} and the ``contacts`` side-loads."""
    email = c["email"]
    local, _, domain = email.partition("@")
    return {
        "cdate": iso(c["cdate"]),
        "email": email,
        "phone": c["phone"],
        "firstName": c["firstName"],
        "lastName": c["lastName"],
        "orgid": "0",
        "segmentio_id": "",
        "bounced_hard": "0",
        "bounced_soft": "0",
        "bounced_date": None,
        "ip": "0",
        "ua": None,
        "hash": c["hash"],
        "socialdata_lastcheck": None,
        "email_local": local,
        "email_domain": domain,
        "sentcnt": str(c["sentcnt"]),
        "rating_tstamp": None,
        "gravatar": "0",
        "deleted": "0",
        "anonymized": "0",
        "adate": None,
        "udate": iso(c["udate"]),
        "edate": None,
        "deleted_at": None,
        "created_utc_timestamp": utc_stamp(c["cdate"]),
        "updated_utc_timestamp": utc_stamp(c["udate"]),
        "scoreValues": [],
        "links": _links(base, "contacts", c["id"], CONTACT_LINKS),
        "id": str(c["id"]),
        "organization": None,
    }


def contact_with_ids(store: Store, c: dict, base: str) -> dict:
    """GET /contacts/{id}'s contact: the full object plus id arrays of its side-loads."""
    body = contact_full(store, c, base)
    body.update(
        {
            "contactAutomations": [str(r["id"]) for r in store.automations_of(c["id"])],
            "contactLists": [str(r["id"]) for r in store.lists_of(c["id"])],
            "fieldValues": [str(r["id"]) for r in store.values_of(c["id"])],
            "geoIps": [],
            "deals": [],
            "accountContacts": [],
        }
    )
    return body


def contact_sync(store: Store, c: dict, base: str) -> dict:
    """The compact contact of POST /contact/sync and POST /contacts (201)."""
    return {
        "email": c["email"],
        "phone": c["phone"],
        "firstName": c["firstName"],
        "lastName": c["lastName"],
        "email_empty": False,
        "cdate": iso(c["cdate"]),
        "udate": iso(c["udate"]),
        "orgid": "",
        "orgname": "",
        "links": _links(base, "contacts", c["id"], CONTACT_LINKS + SYNC_EXTRA_LINKS),
        "hash": c["hash"],
        "fieldValues": [str(r["id"]) for r in store.values_of(c["id"])],
        "id": str(c["id"]),
        "organization": "",
    }


def field_value(fv: dict, base: str, echo: dict | None = None) -> dict:
    """A fieldValue; ``echo`` carries raw request ``contact``/``field`` (AC echoes their types)."""
    contact = echo.get("contact", str(fv["contact"])) if echo else str(fv["contact"])
    field = echo.get("field", str(fv["field"])) if echo else str(fv["field"])
    return {
        "contact": contact,
        "field": field,
        "value": fv["value"],
        "cdate": iso(fv["cdate"]),
        "udate": iso(fv["udate"]),
        "created_by": None,
        "updated_by": None,
        "links": _links(base, "fieldValues", fv["id"], ["owner", "field"]),
        "id": str(fv["id"]),
        "owner": contact,
    }


def field(store: Store, f: dict, base: str) -> dict:
    return {
        "title": f["title"],
        "descript": f["descript"],
        "type": f["type"],
        "isrequired": f["isrequired"],
        "perstag": f["perstag"],
        "defval": f["defval"],
        "show_in_list": f["show_in_list"],
        "rows": f["rows"],
        "cols": f["cols"],
        "visible": f["visible"],
        "service": f["service"],
        "ordernum": f["ordernum"],
        "cdate": iso(f["cdate"]),
        "udate": iso(f["udate"]),
        "options": [str(o["id"]) for o in store.options_of(f["id"])],
        "relations": [str(r["id"]) for r in store.rels_of(f["id"])],
        "links": _links(base, "fields", f["id"], ["options", "relations"]),
        "id": str(f["id"]),
    }


def field_option(o: dict, base: str) -> dict:
    return {
        "orderid": o["orderid"],
        "value": o["value"],
        "label": o["label"],
        "isdefault": o["isdefault"],
        "field": str(o["field"]),
        "cdate": iso(o["cdate"]),
        "udate": iso(o["udate"]),
        "links": _links(base, "fieldOptions", o["id"], ["field"]),
        "id": str(o["id"]),
    }


def field_rel(r: dict) -> dict:
    return {
        "field": str(r["field"]),
        "relid": str(r["relid"]),
        "dorder": "0",
        "cdate": iso(r["cdate"]),
        "links": [],
        "id": str(r["id"]),
    }


def tag(store: Store, t: dict, base: str, with_count: bool = False) -> dict:
    body = {
        "tagType": t["tagType"],
        "tag": t["tag"],
        "description": t["description"],
        "cdate": iso(t["cdate"]),
        "links": _links(base, "tags", t["id"], ["contactGoalTags"]),
        "id": str(t["id"]),
    }
    if with_count:
        body["subscriber_count"] = str(store.tag_count(t["id"]))
        body["links"] = body.pop("links")
        body["id"] = body.pop("id")
    return body


def contact_tag(ct: dict, base: str) -> dict:
    return {
        "cdate": iso(ct["cdate"]),
        "contact": str(ct["contact"]),
        "tag": str(ct["tag"]),
        "created_timestamp": utc_stamp(ct["cdate"]),
        "updated_timestamp": utc_stamp(ct["udate"]),
        "created_by": None,
        "updated_by": None,
        "links": {
            "contact": f"{base}/contactTags/{ct['id']}/contact",
            "tag": f"{base}/contactTags/{ct['id']}/tag",
        },
        "id": str(ct["id"]),
    }


def contact_list(store: Store, row: dict, base: str) -> dict:
    contact = store.contacts.get(row["contact"], {})
    return {
        "contact": str(row["contact"]),
        "list": str(row["list"]),
        "form": None,
        "seriesid": "0",
        "sdate": iso(row["sdate"]),
        "udate": iso(row["udate"]),
        "status": str(row["status"]),
        "responder": "1",
        "sync": "0",
        "unsubreason": None,
        "campaign": None,
        "message": None,
        "first_name": contact.get("firstName", ""),
        "last_name": contact.get("lastName", ""),
        "ip4Sub": "0",
        "sourceid": "0",
        "autosyncLog": None,
        "ip4_last": "0",
        "ip4Unsub": "0",
        "unsubscribeAutomation": None,
        "links": _links(
            base,
            "contactLists",
            row["id"],
            [
                "automation",
                "list",
                "contact",
                "form",
                "autosyncLog",
                "campaign",
                "unsubscribeAutomation",
                "message",
            ],
        ),
        "id": str(row["id"]),
        "automation": None,
    }


def automation(a: dict, base: str) -> dict:
    return {
        "name": a["name"],
        "cdate": iso(a["cdate"]),
        "mdate": iso(a["mdate"]),
        "userid": "1",
        "status": a["status"],
        "entered": str(a["entered"]),
        "exited": str(a["exited"]),
        "hidden": "0",
        "defaultscreenshot": "http://img-us1.com/default-series.gif",
        "screenshot": "",
        "links": _links(
            base,
            "automations",
            a["id"],
            [
                "campaigns",
                "contactGoals",
                "contactAutomations",
                "blocks",
                "goals",
                "sms",
                "sitemessages",
            ],
        ),
        "id": str(a["id"]),
    }


def contact_automation(row: dict, base: str, created: bool = False) -> dict:
    """A contactAutomation; the POST 201 variant uses ints and omits dates, as in the docs."""
    names = ["automation", "contact", "contactGoals"]
    links = _links(base, "contactAutomations", row["id"], names)
    if created:
        return {
            "contact": str(row["contact"]),
            "seriesid": str(row["automation"]),
            "startid": 0,
            "status": 1,
            "lastblock": "1",
            "completedElements": "0",
            "totalElements": "1",
            "completed": 0,
            "completeValue": 50,
            "links": links,
            "id": str(row["id"]),
            "automation": str(row["automation"]),
        }
    done = row["status"] != 1
    return {
        "contact": str(row["contact"]),
        "seriesid": str(row["automation"]),
        "startid": "0",
        "status": str(row["status"]),
        "batchid": None,
        "adddate": iso(row["adddate"]),
        "remdate": iso(row["remdate"]),
        "timespan": "0",
        "lastblock": "1",
        "lastlogid": "0",
        "lastdate": iso(row["lastdate"]),
        "in_als": "0",
        "completedElements": "1" if done else "0",
        "totalElements": "1",
        "completed": 1 if done else 0,
        "completeValue": 100 if done else 50,
        "links": _links(base, "contactAutomations", row["id"], [*names, "automationLogs"]),
        "id": str(row["id"]),
        "automation": str(row["automation"]),
    }


def campaign(c: dict, base: str) -> dict:
    body: dict[str, Any] = {"type": c["type"]}
    body.update(CAMPAIGN_DEFAULTS)
    body.update(
        {
            "seriesid": str(c["seriesid"]),
            "name": c["name"],
            "cdate": iso(c["cdate"]),
            "mdate": iso(c["mdate"]),
            "sdate": iso(c["sdate"]),
            "ldate": iso(c["ldate"]),
            "send_amt": str(c["send_amt"]),
            "total_amt": str(c["send_amt"]),
            "opens": str(c["opens"]),
            "linkclicks": str(c["linkclicks"]),
            "status": c["status"],
        }
    )
    # keep AC's key order: status sits among the counters, links/id/user/automation last
    body["links"] = _links(
        base,
        "campaigns",
        c["id"],
        [
            "user",
            "automation",
            "campaignMessage",
            "campaignMessages",
            "links",
            "campaignLists",
            "aggregateRevenues",
        ],
    )
    body["id"] = str(c["id"])
    body["user"] = "1"
    body["automation"] = str(c["seriesid"]) if c["seriesid"] else None
    return body


def campaign_message(store: Store, row: dict, base: str) -> dict:
    message = store.messages.get(row["message"], {})
    return {
        "campaignid": str(row["campaign"]),
        "messageid": str(row["message"]),
        "percentage": "100",
        "sourcesize": "0",
        "send_amt": str(row["send_amt"]),
        "total_amt": str(row["send_amt"]),
        "subject": message.get("subject", ""),
        "links": _links(base, "campaignMessages", row["id"], ["campaign", "message"]),
        "id": str(row["id"]),
        "campaign": str(row["campaign"]),
        "message": str(row["message"]),
    }


def message(m: dict, base: str) -> dict:
    return {
        "userid": "1",
        "cdate": iso(m["cdate"]),
        "mdate": iso(m["mdate"]),
        "name": m["name"],
        "fromname": m["fromname"],
        "fromemail": m["fromemail"],
        "reply2": "",
        "priority": "3",
        "charset": "utf-8",
        "encoding": "quoted-printable",
        "format": "mime",
        "subject": m["subject"],
        "preheader_text": "",
        "text": "",
        "html": "",
        "links": {},
        "id": str(m["id"]),
        "user": "1",
    }


def link(row: dict, base: str) -> dict:
    return {
        "campaignid": str(row["campaign"]),
        "messageid": str(row["message"]),
        "link": row["link"],
        "name": row["name"],
        "ref": "",
        "tracked": "1",
        "links": _links(base, "links", row["id"], ["campaign", "message"]),
        "id": str(row["id"]),
        "campaign": str(row["campaign"]),
        "message": str(row["message"]),
    }


def activity(row: dict) -> dict:
    return {
        "tstamp": iso(row["tstamp"]),
        "subscriberid": str(row["contact"]),
        "reference_type": row["reference_type"],
        "reference_id": str(row["reference_id"]),
        "reference_action": row["reference_action"],
        "jsonData": row["data"],
        "userid": "1",
        "permission": "",
        "referenceModelName": row["model_name"],
        "notes": [],
        "recipients": [],
        "reference": {"type": row["model_name"], "id": str(row["reference_id"])},
        "user": "1",
        "id": str(row["id"]),
    }


def webhook(h: dict) -> dict:
    return {
        "cdate": iso(h["cdate"]),
        "listid": str(h["listid"]),
        "name": h["name"],
        "url": h["url"],
        "events": list(h["events"]),
        "sources": list(h["sources"]),
        "links": [],
        "id": str(h["id"]),
    }


def user(base: str) -> dict:
    return {
        "username": "admin",
        "firstName": "Sandbox",
        "lastName": "Admin",
        "email": "admin@example.com",
        "phone": "",
        "signature": None,
        "links": _links(
            base, "users", 1, ["lists", "userGroup", "dealGroupTotals", "dealGroupUsers", "configs"]
        ),
        "id": "1",
    }
