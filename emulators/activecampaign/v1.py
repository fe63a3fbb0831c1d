"""The v1 API (``/admin/api.php``): only ``campaign_send``, the one way to send a campaign to a
single contact. v1 answers HTTP 200 with ``result_code`` 1/0 for success and failure alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, request

from .store import as_int

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator

SEND_ACTIONS = {"send", "copy", "test"}
OTHER_ACTIONS = {"source", "messagesize", "spamcheck", "preview"}


def result(code: int, message: str, **extra: object) -> dict:
    return {"result_code": code, "result_message": message, "result_output": "json", **extra}


def unauthorized() -> dict:
    """What v1 answers for a bad ``api_key`` (HTTP 200, result_code 0)."""
    return result(0, "You are not authorized to access this file")


def blueprint(emu: ActiveCampaignEmulator) -> Blueprint:
    bp = Blueprint("ac_v1", __name__)
    store = emu.store

    @bp.route("/admin/api.php", methods=["GET", "POST"])
    def api_php():
        params = request.values  # query string and form body, like PHP's $_REQUEST
        action = params.get("api_action", "")
        if action != "campaign_send":
            return result(
                0, f"Unsupported api_action '{action}' (the emulator implements campaign_send only)"
            )
        return campaign_send(params)

    def campaign_send(params) -> dict:
        email = (params.get("email") or "").strip()
        campaign_id = as_int(params.get("campaignid"))
        message_id = as_int(params.get("messageid"))
        action = params.get("action") or "send"
        if action not in SEND_ACTIONS | OTHER_ACTIONS:
            return result(0, f"Invalid action '{action}'")
        with store.lock:
            contact = store.contact_by_email(email) if email else None
            if contact is None:
                return result(0, f"Contact with email '{email}' was not found")
            campaign = store.campaigns.get(campaign_id or 0)
            if campaign is None:
                return result(0, f"Campaign {params.get('campaignid')} was not found")
            row = next(
                (r for r in store.messages_of(campaign["id"]) if r["message"] == message_id), None
            )
            if row is None:
                return result(
                    0,
                    f"Message {params.get('messageid')} does not belong to "
                    f"campaign {campaign['id']}",
                )
            if action in OTHER_ACTIONS:
                return result(1, "Campaign previewed", id=str(campaign["id"]))
            if action == "test":
                return result(1, "Message sent")
            if action == "send":  # "copy" sends without updating the campaign
                campaign["send_amt"] += 1
                row["send_amt"] += 1
            contact["sentcnt"] += 1
            message = store.messages.get(message_id or 0, {})
            store.add_activity(
                contact["id"],
                "Log",
                store.next_id("log"),
                "sent",
                "log",
                {
                    "campaign": str(campaign["id"]),
                    "message": str(message_id),
                    "subject": message.get("subject", ""),
                    "name": campaign["name"],
                },
            )
        return result(1, "Message sent")

    return bp
