"""v3 routes for the account's vocabulary: custom fields (+ options, list relations) and tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, request

from . import shapes
from .httputil import (
    ApiError,
    api_base,
    json_body,
    member,
    missing_attribute,
    not_found,
    paginate,
    route,
)
from .store import FIELD_TYPES, as_int, now

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator

TAG_OPERATORS = {
    "eq": lambda name, v: name == v,
    "neq": lambda name, v: name != v,
    "lt": lambda name, v: name < v,
    "lte": lambda name, v: name <= v,
    "gt": lambda name, v: name > v,
    "gte": lambda name, v: name >= v,
    "contains": lambda name, v: v in name,
    "starts_with": lambda name, v: name.startswith(v),
}


def blueprint(emu: ActiveCampaignEmulator) -> Blueprint:
    bp = Blueprint("ac_catalog", __name__)
    store = emu.store

    def get_field(field_id: int) -> dict:
        field = store.fields.get(field_id)
        if field is None:
            raise not_found("Field", field_id)
        return field

    # -- fields -----------------------------------------------------------------------------

    @route(bp, store, "/fields", ["GET"])
    def list_fields():
        items = sorted(store.fields.values(), key=lambda f: f["id"])
        perstag = request.args.get("filters[perstag]")
        if perstag:
            items = [f for f in items if f["perstag"] == perstag.upper()]
        page, total = paginate(items)
        base = api_base()
        ids = {f["id"] for f in page}
        return {
            "fieldOptions": [
                shapes.field_option(o, base)
                for o in store.field_options.values()
                if o["field"] in ids
            ],
            "fieldRels": [
                shapes.field_rel(r) for r in store.field_rels.values() if r["field"] in ids
            ],
            "fields": [shapes.field(store, f, base) for f in page],
            "meta": {"total": total},
        }

    @route(bp, store, "/fields", ["POST"])
    def create_field():
        data = member(json_body(), "field")
        for key in ("title", "type"):
            if not data.get(key):
                raise missing_attribute(key)
        if data["type"] not in FIELD_TYPES:
            raise ApiError(
                422,
                {
                    "errors": [
                        {
                            "title": "Invalid field type",
                            "detail": f"'{data['type']}' is not a valid field type",
                            "code": "invalid",
                        }
                    ]
                },
            )
        title = str(data["title"])
        if store.field_by_title(title):
            raise ApiError(
                422,
                {
                    "errors": [
                        {
                            "title": "There is already a field with this title",
                            "detail": (
                                f"There is already a field named '{title}' -- choose another name"
                            ),
                            "code": "duplicate",
                        }
                    ]
                },
            )
        attrs = {
            k: data[k]
            for k in (
                "descript",
                "defval",
                "isrequired",
                "show_in_list",
                "rows",
                "cols",
                "visible",
                "service",
                "ordernum",
            )
            if k in data
        }
        field = store.create_field(title, data["type"], data.get("perstag"), **attrs)
        base = api_base()
        body = shapes.field(store, field, base)
        # The doc's 201 is the list envelope; "field" is added so clients may read either form.
        return {
            "fieldOptions": [],
            "fieldRels": [],
            "fields": [body],
            "field": body,
            "meta": {"total": "1"},
        }, 201

    @route(bp, store, "/fields/<int:field_id>", ["GET"])
    def get_field_view(field_id: int):
        field = get_field(field_id)
        base = api_base()
        return {
            "fieldOptions": [shapes.field_option(o, base) for o in store.options_of(field_id)],
            "fieldRels": [shapes.field_rel(r) for r in store.rels_of(field_id)],
            "field": shapes.field(store, field, base),
        }

    @route(bp, store, "/fields/<int:field_id>", ["PUT"])
    def update_field(field_id: int):
        field = get_field(field_id)
        data = member(json_body(), "field")
        for key in ("title", "type", "descript", "defval", "service"):
            if key in data:
                field[key] = data[key]
        for key in ("isrequired", "show_in_list", "rows", "cols", "visible", "ordernum"):
            if key in data:
                field[key] = str(data[key])
        field["udate"] = now()
        body = shapes.field(store, field, api_base())
        body.pop("options")
        body.pop("relations")
        return {"field": body}

    @route(bp, store, "/fields/<int:field_id>", ["DELETE"])
    def delete_field(field_id: int):
        get_field(field_id)
        del store.fields[field_id]
        for table in (store.field_options, store.field_rels):
            for key in [k for k, v in table.items() if v["field"] == field_id]:
                del table[key]
        store.field_values.delete_where("field", field_id)
        return {}

    @route(bp, store, "/fields/<int:field_id>/options", ["GET"])
    def field_options(field_id: int):
        get_field(field_id)
        base = api_base()
        return {"fieldOptions": [shapes.field_option(o, base) for o in store.options_of(field_id)]}

    @route(bp, store, "/fieldOption/bulk", ["POST"])
    def bulk_options():
        items = json_body().get("fieldOptions")
        failure = ApiError(
            422,
            {
                "errors": "Bulk operation failed. Request must contain an array "
                "of fieldOption objects."
            },
        )
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise failure
        for item in items:
            if as_int(item.get("field")) not in store.fields or item.get("value") in (None, ""):
                raise failure
        created = [
            store.add_field_option(
                as_int(i["field"]) or 0,
                str(i["value"]),
                i.get("label"),
                i.get("orderid"),
                i.get("isdefault", False),
            )
            for i in items
        ]
        base = api_base()
        return {"fieldOptions": [shapes.field_option(o, base) for o in created]}, 201

    @route(bp, store, "/fieldRels", ["POST"])
    def create_field_rel():
        data = member(json_body(), "fieldRel")
        if data.get("field") in (None, ""):
            raise missing_attribute("field")
        get_field(as_int(data["field"]) or 0)
        row = {
            "id": store.next_id("field_rel"),
            "field": as_int(data["field"]),
            "relid": as_int(data.get("relid")) or 0,
            "cdate": now(),
        }
        store.field_rels[row["id"]] = row
        # AC echoes the request's own values (ints in the doc example).
        return {
            "fieldRel": {
                "relid": data.get("relid", 0),
                "field": data["field"],
                "cdate": shapes.iso(row["cdate"]),
                "links": [],
                "id": str(row["id"]),
            }
        }, 201

    # -- tags -------------------------------------------------------------------------------

    def get_tag(tag_id: int) -> dict:
        tag = store.tags.get(tag_id)
        if tag is None:
            raise not_found("Tag", tag_id)
        return tag

    @route(bp, store, "/tags", ["GET"])
    def list_tags():
        items = sorted(store.tags.values(), key=lambda t: t["id"])
        search = request.args.get("search")
        if search:
            items = [t for t in items if search.lower() in t["tag"].lower()]
        for op, test in TAG_OPERATORS.items():
            value = request.args.get(f"filters[search][{op}]")
            if value is not None:
                items = [t for t in items if test(t["tag"].lower(), value.lower())]
        wanted = (
            search
            or next((request.args[k] for k in request.args if k.startswith("filters[search]")), "")
        ).lower()
        order = (request.args.get("orders[search]") or "").lower()
        if order == "weight":
            items.sort(
                key=lambda t: (t["tag"].lower() != wanted, not t["tag"].lower().startswith(wanted))
            )
        elif order in {"asc", "desc"}:
            items.sort(key=lambda t: t["tag"].lower(), reverse=order == "desc")
        page, total = paginate(items)
        base = api_base()
        return {"tags": [shapes.tag(store, t, base) for t in page], "meta": {"total": total}}

    @route(bp, store, "/tags", ["POST"])
    def create_tag():
        data = member(json_body(), "tag")
        name = str(data.get("tag") or "").strip()
        if not name:
            raise missing_attribute("tag")
        if store.tag_by_name(name):
            raise ApiError(
                422,
                {
                    "errors": [
                        {
                            "title": "The tag already exists",
                            "detail": "",
                            "code": "duplicate",
                            "source": {"pointer": "/data/attributes/tag"},
                        }
                    ]
                },
            )
        tag = store.create_tag(name, data.get("tagType") or "contact", data.get("description", ""))
        body = shapes.tag(store, tag, api_base())
        return {
            "tag": {k: body[k] for k in ("tag", "description", "tagType", "cdate", "links", "id")}
        }, 201

    @route(bp, store, "/tags/<int:tag_id>", ["GET"])
    def get_tag_view(tag_id: int):
        return {"tag": shapes.tag(store, get_tag(tag_id), api_base(), with_count=True)}

    @route(bp, store, "/tags/<int:tag_id>", ["PUT"])
    def update_tag(tag_id: int):
        tag = get_tag(tag_id)
        data = member(json_body(), "tag")
        for key in ("tag", "tagType", "description"):
            if data.get(key) is not None:
                tag[key] = str(data[key])
        return {"tag": shapes.tag(store, tag, api_base())}

    @route(bp, store, "/tags/<int:tag_id>", ["DELETE"])
    def delete_tag(tag_id: int):
        get_tag(tag_id)
        del store.tags[tag_id]
        store.contact_tags.delete_where("tag", tag_id)
        return {}

    return bp
