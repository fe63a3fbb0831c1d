"""``/_emulator/…``: inspect and drive the emulator from another process (sandbox mode, benches).

No Api-Token, no rate limit and no request-log entries, so inspecting never disturbs what is
being measured. Bodies mirror the Python facade of :class:`ActiveCampaignEmulator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, jsonify, request

from .httputil import ApiError, json_body
from .store import iso

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator


def blueprint(emu: ActiveCampaignEmulator) -> Blueprint:
    bp = Blueprint("ac_control", __name__)

    @bp.get("/health")
    def health():
        return {"ok": True, "url": emu.url, "api_url": emu.api_url}

    @bp.get("/contacts")
    def contacts():
        email = request.args.get("email")
        if email:
            found = emu.find_contact(email)
            return {"contacts": [found] if found else []}
        return {"contacts": emu.contacts()}

    @bp.get("/requests")
    def requests_log():
        seconds = float(request.args.get("seconds", 1.0))
        return {
            "requests": emu.request_log,
            "count_429": emu.count_status(429),
            "max_in_window": emu.max_requests_in_any_window(seconds),
        }

    @bp.post("/reset-log")
    def reset_log():
        emu.reset_log()
        return {"ok": True}

    @bp.post("/reset")
    def reset():
        emu.reset()
        return {"ok": True}

    @bp.get("/limits")
    def get_limits():
        return emu.limits()

    @bp.post("/limits")
    def set_limits():
        try:
            emu.set_limits(**json_body())
        except TypeError as exc:
            raise ApiError(400, {"message": str(exc)}) from exc
        return emu.limits()

    @bp.post("/seed")
    def seed():
        """Body: ``{"automations":[{name,status}], "campaigns":[{name,...}], "fields":[{title,
        type, perstag, options}], "tags":[name], "contacts":[{email, ...}]}`` → created ids."""
        body = json_body()
        try:
            created = {
                "automations": [emu.seed_automation(**a) for a in body.get("automations", [])],
                "campaigns": [emu.seed_campaign(**c) for c in body.get("campaigns", [])],
                "fields": [emu.seed_field(**f) for f in body.get("fields", [])],
                "tags": [emu.seed_tag(t) for t in body.get("tags", [])],
                "contacts": [emu.seed_contact(**c) for c in body.get("contacts", [])],
            }
        except TypeError as exc:
            raise ApiError(400, {"message": str(exc)}) from exc
        return created, 201

    @bp.get("/activities")
    def activities():
        contact_id = request.args.get("contact")
        if not contact_id:
            raise ApiError(400, {"message": "contact is required"})
        return {"activities": emu.activities_for(contact_id)}

    @bp.get("/webhooks")
    def webhooks():
        with emu.store.lock:
            hooks = [{**h, "cdate": iso(h["cdate"])} for h in emu.store.webhooks.values()]
        return jsonify({"webhooks": hooks, "deliveries": emu.webhook_deliveries()})

    @bp.post("/webhook-events")
    def fire_event():
        body = json_body()
        try:
            deliveries = emu.fire_webhook_event(
                body["event_type"],
                body["contact_id"],
                body.get("initiated_from", "admin"),
                **body.get("extra", {}),
            )
        except KeyError as exc:
            raise ApiError(400, {"message": f"missing {exc}"}) from exc
        return {"deliveries": deliveries}

    @bp.post("/automation-webhook")
    def automation_webhook():
        body = json_body()
        delivery = emu.fire_automation_webhook(
            body["url"], body["contact_id"], body["automation_id"]
        )
        return {"delivery": delivery}

    return bp
