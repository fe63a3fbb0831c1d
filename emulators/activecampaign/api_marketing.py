"""v3 routes for marketing objects: user, automations, campaigns, activities, webhooks, imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, request

from . import shapes
from .httputil import (
    ApiError,
    api_base,
    invalid,
    json_body,
    member,
    missing_attribute,
    not_found,
    order_of,
    paginate,
    route,
)
from .store import WEBHOOK_EVENTS, WEBHOOK_SOURCES, as_int, parse_when

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator


def blueprint(emu: ActiveCampaignEmulator) -> Blueprint:
    bp = Blueprint("ac_marketing", __name__)
    store = emu.store

    @route(bp, store, "/users/me", ["GET"])
    def users_me():
        return {"user": shapes.user(api_base())}

    # -- automations ------------------------------------------------------------------------

    @route(bp, store, "/automations", ["GET"])
    def list_automations():
        items = sorted(store.automations.values(), key=lambda a: a["id"])
        name = request.args.get("filters[name]")
        if name:
            items = [a for a in items if name.lower() in a["name"].lower()]
        status = request.args.get("filters[status]")
        if status:
            items = [a for a in items if a["status"] == status]
        page, total = paginate(items)
        base = api_base()
        return {
            "automations": [shapes.automation(a, base) for a in page],
            "meta": {
                "total": total,
                "starts": [
                    {"id": str(a["id"]), "series": str(a["id"]), "type": "subscribe"} for a in page
                ],
                "filtered": bool(name or status),
                "smsLogs": [],
            },
        }

    @route(bp, store, "/contactAutomations", ["POST"])
    def add_to_automation():
        data = member(json_body(), "contactAutomation")
        for key in ("contact", "automation"):
            if data.get(key) in (None, ""):
                raise missing_attribute(key)
        contact = store.contacts.get(as_int(data["contact"]) or 0)
        automation = store.automations.get(as_int(data["automation"]) or 0)
        if contact is None or automation is None or automation["status"] != "1":
            raise ApiError(403, {"message": "Could not create SubscriberSeries"})
        row = store.add_contact_automation(contact, automation)
        base = api_base()
        return {
            "contacts": [shapes.contact_full(store, contact, base)],
            "contactAutomation": shapes.contact_automation(row, base, created=True),
        }, 201

    @route(bp, store, "/contactAutomations", ["GET"])
    def list_contact_automations():
        items = sorted(store.contact_automations.values(), key=lambda r: r["id"])
        contact_id = as_int(request.args.get("filters[contact]") or request.args.get("contact"))
        if contact_id:
            items = [r for r in items if r["contact"] == contact_id]
        series = as_int(
            request.args.get("filters[seriesid]") or request.args.get("filters[automation]")
        )
        if series:
            items = [r for r in items if r["automation"] == series]
        page, total = paginate(items)
        base = api_base()
        return {
            "contactAutomations": [shapes.contact_automation(r, base) for r in page],
            "meta": {"total": total, "showcase_stats": []},
        }

    @route(bp, store, "/contactAutomations/<int:row_id>", ["GET"])
    def get_contact_automation(row_id: int):
        row = store.contact_automations.get(row_id)
        if row is None:
            raise not_found("SubscriberSeries", row_id)
        return {"contactAutomation": shapes.contact_automation(row, api_base())}

    @route(bp, store, "/contactAutomations/<int:row_id>", ["DELETE"])
    def remove_from_automation(row_id: int):
        row = store.contact_automations.pop(row_id, None)
        if row is None:  # the doc shows this one as a 403
            raise not_found("SubscriberSeries", row_id, 403)
        automation = store.automations.get(row["automation"])
        if automation:
            automation["exited"] += 1
        return {}

    # -- campaigns --------------------------------------------------------------------------

    def get_campaign(campaign_id: int) -> dict:
        campaign = store.campaigns.get(campaign_id)
        if campaign is None:
            raise not_found("Campaign", campaign_id)
        return campaign

    @route(bp, store, "/campaigns", ["GET"])
    def list_campaigns():
        items = sorted(store.campaigns.values(), key=lambda c: c["id"])
        series = as_int(request.args.get("filters[seriesid]"))
        if series is not None:
            items = [c for c in items if c["seriesid"] == series]
        for key in ("type", "status"):
            value = request.args.get(f"filters[{key}]")
            if value:
                items = [c for c in items if str(c[key]) == value]
        for key in ("sdate", "ldate"):
            direction = order_of(key)
            if direction:
                items.sort(
                    key=lambda c, k=key: (c[k] is not None, c[k] and c[k].timestamp()),
                    reverse=direction == "DESC",
                )
        page, total = paginate(items)
        base = api_base()
        return {"campaigns": [shapes.campaign(c, base) for c in page], "meta": {"total": total}}

    @route(bp, store, "/campaigns/<int:campaign_id>", ["GET"])
    def get_campaign_view(campaign_id: int):
        return {"campaign": shapes.campaign(get_campaign(campaign_id), api_base())}

    @route(bp, store, "/campaigns/<int:campaign_id>/campaignMessages", ["GET"])
    def messages_of_campaign(campaign_id: int):
        get_campaign(campaign_id)
        base = api_base()
        rows = store.messages_of(campaign_id)
        return {
            "campaignMessages": [shapes.campaign_message(store, r, base) for r in rows],
            "meta": {"total": str(len(rows))},
        }

    @route(bp, store, "/campaignMessages", ["GET"])
    def list_campaign_messages():
        items = sorted(store.campaign_messages.values(), key=lambda r: r["id"])
        campaign_id = as_int(request.args.get("filters[campaignid]"))
        if campaign_id:
            items = [r for r in items if r["campaign"] == campaign_id]
        page, total = paginate(items)
        base = api_base()
        return {
            "campaignMessages": [shapes.campaign_message(store, r, base) for r in page],
            "meta": {"total": total},
        }

    @route(bp, store, "/campaigns/<int:campaign_id>/links", ["GET"])
    def links_of_campaign(campaign_id: int):
        get_campaign(campaign_id)
        base = api_base()
        return {
            "links": [
                shapes.link(r, base) for r in store.links.values() if r["campaign"] == campaign_id
            ]
        }

    @route(bp, store, "/messages/<int:message_id>", ["GET"])
    def get_message(message_id: int):
        message = store.messages.get(message_id)
        if message is None:
            raise not_found("Message", message_id)
        return {"message": shapes.message(message, api_base())}

    # -- activities -------------------------------------------------------------------------

    @route(bp, store, "/activities", ["GET"])
    def list_activities():
        contact_id = as_int(request.args.get("contact"))
        if contact_id is None:
            raise ApiError(400, {"message": "A contact ID is required to access this endpoint."})
        items = store.activities_of(contact_id)
        after = parse_when(request.args.get("after"))
        if after is not None:
            items = [a for a in items if a["tstamp"].replace(microsecond=0) >= after]
        items.sort(key=lambda a: (a["tstamp"], a["id"]), reverse=order_of("tstamp") != "ASC")
        page, total = paginate(items)
        contact = store.contacts.get(contact_id)
        body = {
            "contacts": (
                [
                    {
                        "cdate": shapes.iso(contact["cdate"]),
                        "email": contact["email"],
                        "firstName": contact["firstName"],
                        "lastName": contact["lastName"],
                        "id": str(contact_id),
                    }
                ]
                if contact
                else []
            ),
            "activityRecipients": [],
            "activities": [shapes.activity(a) for a in page],
            "meta": {"total": total},
        }
        include = request.args.get("include", "")
        base = api_base()
        if "automation" in include:
            ids = {
                store.contact_automations[a["reference_id"]]["automation"]
                for a in page
                if a["reference_type"] == "SubscriberSeries"
                and a["reference_id"] in store.contact_automations
            }
            body["automations"] = [
                shapes.automation(store.automations[i], base)
                for i in sorted(ids)
                if i in store.automations
            ]
        if "campaign" in include:
            ids = {(a["data"] or {}).get("campaign") for a in page}
            body["campaigns"] = [
                shapes.campaign(store.campaigns[as_int(i) or 0], base)
                for i in sorted(i for i in ids if i)
                if as_int(i) in store.campaigns
            ]
        return body

    # -- webhooks ---------------------------------------------------------------------------

    def get_hook(hook_id: int) -> dict:
        hook = store.webhooks.get(hook_id)
        if hook is None:
            raise not_found("Webhook", hook_id)
        return hook

    def check_hook(data: dict, partial: bool) -> None:
        for key in ("name", "url", "events", "sources"):
            if not partial and not data.get(key):
                raise invalid(f"The {key} field is required.", "field_missing", key)
        for key, allowed in (("events", WEBHOOK_EVENTS), ("sources", WEBHOOK_SOURCES)):
            values = data.get(key)
            if values is None:
                continue
            if not isinstance(values, list) or any(v not in allowed for v in values):
                raise invalid(f"Invalid {key}: {values}", "invalid", key)

    @route(bp, store, "/webhooks", ["POST"])
    def create_webhook():
        data = member(json_body(), "webhook")
        check_hook(data, partial=False)
        hook = store.create_webhook(
            str(data["name"]),
            str(data["url"]),
            data["events"],
            data["sources"],
            data.get("listid", 0),
        )
        return {"webhook": shapes.webhook(hook)}, 201

    @route(bp, store, "/webhooks", ["GET"])
    def list_webhooks():
        items = sorted(store.webhooks.values(), key=lambda h: h["id"])
        for key in ("name", "url"):
            value = request.args.get(f"filters[{key}]")
            if value:
                items = [h for h in items if value.lower() in h[key].lower()]
        listid = as_int(request.args.get("filters[listid]"))
        if listid is not None:
            items = [h for h in items if h["listid"] == listid]
        page, total = paginate(items)
        return {"webhooks": [shapes.webhook(h) for h in page], "meta": {"total": total}}

    @route(bp, store, "/webhooks/<int:hook_id>", ["GET"])
    def get_webhook(hook_id: int):
        return {"webhook": shapes.webhook(get_hook(hook_id))}

    @route(bp, store, "/webhooks/<int:hook_id>", ["PUT"])
    def update_webhook(hook_id: int):
        hook = get_hook(hook_id)
        data = member(json_body(), "webhook")
        check_hook(data, partial=True)
        for key in ("name", "url", "events", "sources"):
            if data.get(key):
                hook[key] = data[key]
        if "listid" in data:
            hook["listid"] = as_int(data["listid"]) or 0
        return {"webhook": shapes.webhook(hook)}

    @route(bp, store, "/webhooks/<int:hook_id>", ["DELETE"])
    def delete_webhook(hook_id: int):
        get_hook(hook_id)
        del store.webhooks[hook_id]
        return {}

    @route(bp, store, "/webhook/events", ["GET"])
    def webhook_events():
        return {"webhookEvents": list(WEBHOOK_EVENTS), "meta": {"total": len(WEBHOOK_EVENTS)}}

    # -- bulk import (not under the lock: it validates first and locks for the store part) ---

    @bp.route("/import/bulk_import", methods=["POST"])
    def bulk_import():
        raw = request.get_data(cache=True)
        payload = json_body()
        body, status = emu.importer.submit(len(raw), payload)
        return body, status

    @bp.route("/import/bulk_import", methods=["GET"])
    def bulk_import_status():
        return emu.importer.overview()

    @bp.route("/import/info", methods=["GET"])
    def import_info():
        body, status = emu.importer.info(request.args.get("batchId"))
        return body, status

    return bp
