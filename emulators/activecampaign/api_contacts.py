"""v3 contact routes: contacts, their sub-resources, field values, contact tags and lists.

Writes made through the API emit webhook events with source ``api`` (``update``,
``contact_tag_added``/``removed``, ``subscribe``/``unsubscribe``); creating a contact alone
emits nothing, as in AC where ``subscribe`` needs a list.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, request

from . import shapes
from .httputil import (
    ApiError,
    api_base,
    id_list,
    invalid,
    json_body,
    member,
    missing_attribute,
    not_found,
    order_of,
    page_params,
    route,
)
from .store import EMAIL_RE, as_int, parse_when

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator

ORDER_KEYS = {
    "id": lambda c: c["id"],
    "cdate": lambda c: c["cdate"],
    "email": lambda c: c["email"].lower(),
    "first_name": lambda c: c["firstName"].lower(),
    "last_name": lambda c: c["lastName"].lower(),
    "name": lambda c: f"{c['firstName']} {c['lastName']}".lower(),
}


def _second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def blueprint(emu: ActiveCampaignEmulator) -> Blueprint:
    bp = Blueprint("ac_contacts", __name__)
    store = emu.store

    def get_contact(contact_id: int, status: int = 404, lower: bool = False) -> dict:
        contact = store.contacts.get(contact_id)
        if contact is None:
            if lower:  # DELETE /contacts/{id} words it differently
                raise ApiError(
                    404, {"message": f"No result found for contact with id {contact_id}"}
                )
            raise not_found("Subscriber", contact_id, status)
        return contact

    def check_email(email: Any) -> str:
        if not isinstance(email, str) or not email.strip():
            raise invalid("Contact Email Address is not valid.", "field_missing", "email")
        if not EMAIL_RE.match(email.strip()):
            raise invalid("Email address is not valid.", "email_invalid", "email")
        return email.strip()

    def apply(contact: dict, data: dict, touch: bool) -> list[dict]:
        """Write name/phone/email and inline ``fieldValues``; returns the values written."""
        store.update_contact(
            contact,
            touch=touch,
            **{k: data.get(k) for k in ("email", "firstName", "lastName", "phone")},
        )
        written = []
        for item in data.get("fieldValues") or []:
            if not isinstance(item, dict):
                continue
            field = store.fields.get(as_int(item.get("field")))
            if field is not None:
                written.append(store.set_field_value(contact, field, item.get("value")))
        return written

    @route(bp, store, "/contacts", ["POST"])
    def create_contact():
        data = member(json_body(), "contact")
        email = check_email(data.get("email"))
        if store.contact_by_email(email):
            raise invalid("Email address already exists in the system", "duplicate", "email")
        contact = store.create_contact(email)
        written = apply(contact, data, touch=False)
        base = api_base()
        return {
            "fieldValues": [_fv_plain(fv, base) for fv in written],
            "contact": shapes.contact_sync(store, contact, base),
        }, 201

    @route(bp, store, "/contact/sync", ["POST"])
    def sync_contact():
        data = member(json_body(), "contact")
        email = check_email(data.get("email"))
        contact = store.contact_by_email(email)
        existed = contact is not None
        if contact is None:
            contact = store.create_contact(email)
        written = apply(contact, data, touch=existed)
        if existed:
            emu.emit("update", contact)
        base = api_base()
        return {
            "fieldValues": [shapes.field_value(fv, base) for fv in written],
            "contact": shapes.contact_sync(store, contact, base),
        }, 201

    @route(bp, store, "/contacts", ["GET"])
    def list_contacts():
        args = request.args
        if args.get("email"):
            items = store.contacts_by_email(args["email"])
        else:
            items = list(store.contacts.values())
        if args.get("email_like"):
            needle = args["email_like"].lower()
            items = [c for c in items if needle in c["email"].lower()]
        ids = id_list("ids")
        if ids:
            items = [c for c in items if c["id"] in ids]
        for name, test in (
            ("id_greater", lambda a, b: a > b),
            ("id_less", lambda a, b: a < b),
            ("exclude", lambda a, b: a != b),
        ):
            bound = as_int(args.get(name))
            if bound is not None:
                items = [c for c in items if test(c["id"], bound)]
        if args.get("phone"):
            items = [c for c in items if c["phone"].startswith(args["phone"])]
        if args.get("search"):
            needle = args["search"].lower()
            items = [
                c
                for c in items
                if any(
                    needle in s.lower()
                    for s in (
                        c["email"],
                        c["firstName"],
                        c["lastName"],
                        c["phone"],
                        f"{c['firstName']} {c['lastName']}",
                    )
                )
            ]
        tagid = as_int(args.get("tagid"))
        if tagid:
            items = [c for c in items if store.find_contact_tag(c["id"], tagid)]
        listid = as_int(args.get("listid"))
        if listid:
            items = [
                c
                for c in items
                if any(r["list"] == listid and r["status"] == 1 for r in store.lists_of(c["id"]))
            ]
        seriesid = as_int(args.get("seriesid"))
        if seriesid:
            items = [
                c
                for c in items
                if any(r["automation"] == seriesid for r in store.automations_of(c["id"]))
            ]
        # Date filters compare at AC's one-second resolution; "after" is inclusive so an
        # incremental cursor built from the last udate never misses a same-second update.
        for key, attr, after in (
            ("created_after", "cdate", True),
            ("created_before", "cdate", False),
            ("updated_after", "udate", True),
            ("updated_before", "udate", False),
        ):
            raw = args.get(f"filters[{key}]")
            if raw is None:
                continue
            when = parse_when(raw)
            if when is None:
                raise ApiError(400, {"message": f"Invalid date for filters[{key}]: {raw}"})
            items = [
                c for c in items if (_second(c[attr]) >= when if after else _second(c[attr]) < when)
            ]
        items.sort(key=ORDER_KEYS["id"])
        for name, key in ORDER_KEYS.items():
            direction = order_of(name)
            if direction:
                items.sort(key=key, reverse=direction == "DESC")
                break
        limit, offset = page_params()
        base = api_base()
        page_input = {
            "segmentid": as_int(args.get("segmentid")) or 0,
            "formid": as_int(args.get("formid")) or 0,
            "listid": listid or 0,
            "tagid": tagid or 0,
            "limit": limit,
            "offset": offset,
            "search": args.get("search"),
            "sort": None,
            "seriesid": seriesid or 0,
            "waitid": as_int(args.get("waitid")) or 0,
            "status": as_int(args.get("status")) or -1,
            "forceQuery": as_int(args.get("forceQuery")) or 0,
            "cacheid": hashlib.md5(request.query_string).hexdigest(),
        }
        return {
            "scoreValues": [],
            "contacts": [
                shapes.contact_full(store, c, base) for c in items[offset : offset + limit]
            ],
            "meta": {"total": str(len(items)), "page_input": page_input},
        }

    @route(bp, store, "/contacts/<int:contact_id>", ["GET"])
    def get_contact_view(contact_id: int):
        contact = get_contact(contact_id)
        base = api_base()
        return {
            "contactAutomations": [
                shapes.contact_automation(r, base) for r in store.automations_of(contact_id)
            ],
            "contactLists": [
                shapes.contact_list(store, r, base) for r in store.lists_of(contact_id)
            ],
            "deals": [],
            "fieldValues": [_fv_plain(fv, base) for fv in store.values_of(contact_id)],
            "geoAddresses": [],
            "geoIps": [],
            "contact": shapes.contact_with_ids(store, contact, base),
        }

    @route(bp, store, "/contacts/<int:contact_id>", ["PUT"])
    def update_contact(contact_id: int):
        contact = get_contact(contact_id)
        data = member(json_body(), "contact")
        if data.get("email") is not None:
            email = check_email(data["email"])
            other = store.contact_by_email(email)
            if other is not None and other["id"] != contact_id:
                raise invalid("Email address already exists in the system", "duplicate", "email")
        written = apply(contact, data, touch=True)
        emu.emit("update", contact)
        base = api_base()
        return {
            "fieldValues": [_fv_plain(fv, base) for fv in written],
            "contact": shapes.contact_full(store, contact, base),
        }

    @route(bp, store, "/contacts/<int:contact_id>", ["DELETE"])
    def delete_contact(contact_id: int):
        get_contact(contact_id, lower=True)
        store.delete_contact(contact_id)
        return {}

    @route(bp, store, "/contacts/<int:contact_id>/contactTags", ["GET"])
    def contact_tags_of(contact_id: int):
        get_contact(contact_id)
        base = api_base()
        return {"contactTags": [shapes.contact_tag(ct, base) for ct in store.tags_of(contact_id)]}

    @route(bp, store, "/contacts/<int:contact_id>/contactAutomations", ["GET"])
    def contact_automations_of(contact_id: int):
        get_contact(contact_id)
        base = api_base()
        rows = [shapes.contact_automation(r, base) for r in store.automations_of(contact_id)]
        return {"contactAutomations": rows}

    @route(bp, store, "/contacts/<int:contact_id>/fieldValues", ["GET"])
    def field_values_of(contact_id: int):
        get_contact(contact_id)
        base = api_base()
        return {"fieldValues": [shapes.field_value(fv, base) for fv in store.values_of(contact_id)]}

    @route(bp, store, "/contacts/<int:contact_id>/contactLists", ["GET"])
    def contact_lists_of(contact_id: int):
        get_contact(contact_id)
        base = api_base()
        return {
            "contactLists": [
                shapes.contact_list(store, r, base) for r in store.lists_of(contact_id)
            ]
        }

    @route(
        bp,
        store,
        "/contacts/<int:contact_id>/<any(contactLogs, trackingLogs, bounceLogs):kind>",
        ["GET"],
    )
    def empty_logs(contact_id: int, kind: str):
        get_contact(contact_id)
        return {kind: []}

    # -- field values -----------------------------------------------------------------------

    def write_value(data: dict) -> tuple[dict, dict]:
        for key in ("contact", "field"):
            if data.get(key) in (None, ""):
                raise missing_attribute(key)
        contact = get_contact(as_int(data["contact"]) or 0)
        field = store.fields.get(as_int(data["field"]) or 0)
        if field is None:
            raise not_found("Field", data["field"])
        fv = store.set_field_value(contact, field, data.get("value"))
        emu.emit("update", contact)
        return contact, fv

    def value_response(contact: dict, fv: dict, data: dict) -> dict:
        base = api_base()
        echo = {"contact": data["contact"], "field": data["field"]}
        body = _fv_plain(fv, base, echo)
        body["owner"] = body.pop("owner")
        body["id"] = body.pop("id")
        return {"contacts": [shapes.contact_full(store, contact, base)], "fieldValue": body}

    @route(bp, store, "/fieldValues", ["POST"])
    def create_field_value():
        data = member(json_body(), "fieldValue")
        contact, fv = write_value(data)
        return value_response(contact, fv, data), 200

    @route(bp, store, "/fieldValues/<int:value_id>", ["PUT"])
    def update_field_value(value_id: int):
        if value_id not in store.field_values:
            raise not_found("FieldValue", value_id, 403)
        data = member(json_body(), "fieldValue")
        current = store.field_values[value_id]
        data.setdefault("contact", str(current["contact"]))
        data.setdefault("field", str(current["field"]))
        contact, fv = write_value(data)
        return value_response(contact, fv, data)

    @route(bp, store, "/fieldValues/<int:value_id>", ["GET"])
    def get_field_value(value_id: int):
        fv = store.field_values.get(value_id)
        if fv is None:
            raise not_found("FieldValue", value_id, 403)
        return {"fieldValue": _fv_plain(fv, api_base())}

    @route(bp, store, "/fieldValues/<int:value_id>", ["DELETE"])
    def delete_field_value(value_id: int):
        if store.field_values.pop(value_id, None) is None:
            raise not_found("FieldValue", value_id, 403)
        return {}

    @route(bp, store, "/fieldValues", ["GET"])
    def list_field_values():
        items = sorted(store.field_values.values(), key=lambda fv: fv["id"])
        field_id = as_int(request.args.get("filters[fieldid]"))
        if field_id:
            items = [fv for fv in items if fv["field"] == field_id]
        if request.args.get("filters[val]") is not None:
            items = [fv for fv in items if fv["value"] == request.args["filters[val]"]]
        limit, offset = page_params()
        base = api_base()
        return {
            "fieldValues": [_fv_plain(fv, base) for fv in items[offset : offset + limit]],
            "meta": {"total": str(len(items))},
        }

    # -- contact tags -----------------------------------------------------------------------

    @route(bp, store, "/contactTags", ["POST"])
    def create_contact_tag():
        data = member(json_body(), "contactTag")
        for key in ("contact", "tag"):
            if data.get(key) in (None, ""):
                raise missing_attribute(key)
        contact = store.contacts.get(as_int(data["contact"]) or 0)
        if contact is None:
            raise ApiError(
                404,
                {"errors": [{"status": 404, "title": "Not Found", "detail": "Contact not found"}]},
            )
        tag = store.tags.get(as_int(data["tag"]) or 0)
        if tag is None:
            raise ApiError(
                404, {"errors": [{"status": 404, "title": "Not Found", "detail": "Tag not found"}]}
            )
        row, created = store.add_contact_tag(contact, tag)
        if created:
            emu.emit("contact_tag_added", contact, tag=tag["tag"])
        body = shapes.contact_tag(row, api_base())
        return {"contactTag": {k: body[k] for k in ("cdate", "contact", "id", "links", "tag")}}, 201

    @route(bp, store, "/contactTags/<int:row_id>", ["GET"])
    def get_contact_tag(row_id: int):
        row = store.contact_tags.get(row_id)
        if row is None:
            raise not_found("SubscriberTag", row_id)
        return {"contactTag": shapes.contact_tag(row, api_base())}

    @route(bp, store, "/contactTags/<int:row_id>", ["DELETE"])
    def delete_contact_tag(row_id: int):
        row = store.contact_tags.pop(row_id, None)
        if row is None:
            raise not_found("SubscriberTag", row_id)
        contact = store.contacts.get(row["contact"])
        if contact is not None:
            store.touch(contact)
            tag = store.tags.get(row["tag"])
            emu.emit("contact_tag_removed", contact, tag=tag["tag"] if tag else "")
        return {}

    # -- list membership --------------------------------------------------------------------

    @route(bp, store, "/contactLists", ["POST"])
    def update_list_status():
        data = member(json_body(), "contactList")
        for key in ("list", "contact", "status"):
            if data.get(key) in (None, ""):
                raise missing_attribute(key)
        contact = get_contact(as_int(data["contact"]) or 0)
        status = as_int(data["status"]) or 1
        row = store.set_list_status(contact, as_int(data["list"]) or 0, status)
        emu.emit("subscribe" if status == 1 else "unsubscribe", contact, list_id=row["list"])
        base = api_base()
        body = shapes.contact_list(store, row, base)
        body["status"] = status
        body.pop("udate")
        return {"contacts": [shapes.contact_full(store, contact, base)], "contactList": body}

    return bp


def _fv_plain(fv: dict, base: str, echo: dict | None = None) -> dict:
    """A fieldValue without ``created_by``/``updated_by`` (only /contact/sync shows them)."""
    body = shapes.field_value(fv, base, echo)
    body.pop("created_by")
    body.pop("updated_by")
    return body
