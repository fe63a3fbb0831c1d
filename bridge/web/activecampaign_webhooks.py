"""``POST /webhooks/activecampaign/<token>[/create-lead|/create-contact]``: AC → Dynamics.

ActiveCampaign does not sign its webhooks, so the per-connection secret is the
unguessable ``<token>`` in the URL (only its SHA-256 is stored). The body is
form-encoded; it is validated, but only "which contact, which event" is used:
the worker re-reads the contact from the API. The view answers 202 as soon as
the job is queued (or folded into one already waiting); 401 for an unknown
token, 400 for a body that is not an ActiveCampaign webhook, 503 when Redis or
the database is down (ActiveCampaign never retries, the scheduled sync's
``updated_after`` poll repairs what is lost).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select

from bridge.crypto import hash_secret, secret_matches
from bridge.errors import ApiError
from bridge.models import Connection
from bridge.queueing import enqueue_contact_pull
from bridge.schemas.activecampaign import SYNCED_EVENTS, AcWebhookEvent, load_ac_webhook
from bridge.web import current_runtime
from bridge.web.dataverse_webhooks import ConnectionKeyCache

log = logging.getLogger(__name__)

bp = Blueprint("activecampaign_webhooks", __name__)

CACHE_CONFIG = "ACTIVECAMPAIGN_WEBHOOK_TOKEN_CACHE_SECONDS"
MAX_TOKEN_LENGTH = 200
# Event type → the kind of pull job (tag changes and subscriptions re-read the contact too).
EVENT_KINDS = {
    "update": "update",
    "contact_tag_added": "update",
    "contact_tag_removed": "update",
    "subscribe": "subscribe",
    "unsubscribe": "unsubscribe",
}


@dataclass(frozen=True)
class TokenConnection:
    id: int
    org_id: str  # ConnectionKeyCache's shape
    key_hash: str


def _cache() -> ConnectionKeyCache:
    cache = current_app.extensions.get("bridge.activecampaign_token_cache")
    if cache is None:
        ttl = float(current_app.config.get(CACHE_CONFIG, 5.0))
        cache = current_app.extensions.setdefault(
            "bridge.activecampaign_token_cache", ConnectionKeyCache(ttl)
        )
    return cache


def _authenticate(token: str) -> TokenConnection:
    """Token → connection by its hash, confirmed in constant time."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise ApiError(401, "invalid_webhook_token", "The webhook URL is not valid.")
    token_hash = hash_secret(token)
    cache = _cache()
    connection = cache.get(token_hash)
    if connection is None:
        with current_runtime().db.session() as session:
            row = session.execute(
                select(Connection.id, Connection.dataverse_org_id, Connection.ac_webhook_token_hash)
                .where(Connection.ac_webhook_token_hash == token_hash)
                .limit(1)
            ).first()
        if row is not None:
            connection = TokenConnection(row[0], row[1], row[2])
            cache.put(token_hash, connection)
    if connection is None or not secret_matches(token, connection.key_hash):
        raise ApiError(401, "invalid_webhook_token", "The webhook URL is not valid.")
    return connection


def _read(automation: bool) -> AcWebhookEvent:
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(
            415, "unsupported_media_type",
            "The body must be form-encoded, as ActiveCampaign posts it.",
        )
    try:
        return load_ac_webhook(request.form, automation=automation)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ApiError(
            400, "invalid_payload", "The body is not an ActiveCampaign webhook.",
            fields={str(k): v for k, v in messages.items()},
        ) from None


def _accepted(outcome: str, **body) -> Response:
    g.ac_webhook_outcome = outcome
    response = jsonify({"status": outcome, **body})
    response.status_code = 202
    return response


@bp.post("/webhooks/activecampaign/<token>", strict_slashes=False)
def receive_account_webhook(token: str) -> Response:
    connection = _authenticate(token)
    g.ac_webhook_connection = connection.id
    event = _read(automation=False)
    g.ac_webhook_event = event
    kind = EVENT_KINDS.get(event.type or "")
    if kind is None:
        return _accepted("ignored", reason=f"{event.type} is not synced",
                         synced_events=list(SYNCED_EVENTS))
    queued = enqueue_contact_pull(
        current_runtime().redis, connection.id, event.contact_id, kind, event.type or kind
    )
    return _accepted("accepted", queued=queued)


@bp.post("/webhooks/activecampaign/<token>/<any('create-lead', 'create-contact'):action>",
         strict_slashes=False)
def receive_automation_webhook(token: str, action: str) -> Response:
    connection = _authenticate(token)
    g.ac_webhook_connection = connection.id
    event = _read(automation=True)
    g.ac_webhook_event = event
    entity = "lead" if action == "create-lead" else "contact"
    queued = enqueue_contact_pull(
        current_runtime().redis, connection.id, event.contact_id, f"create:{entity}",
        f"automation {event.series_id or '?'}: create {entity}",
    )
    return _accepted("accepted", queued=queued)


@bp.before_request
def _start_timer() -> None:
    g.ac_webhook_started = time.perf_counter()


@bp.after_request
def _log_delivery(response: Response) -> Response:
    """One INFO line per delivery; never the token (it is the secret)."""
    event: AcWebhookEvent | None = g.get("ac_webhook_event")
    started = g.get("ac_webhook_started")
    log.info(
        "activecampaign webhook %s status=%s connection=%s type=%s contact=%s ms=%.1f",
        g.get("ac_webhook_outcome", "error"), response.status_code,
        g.get("ac_webhook_connection", "-"), event.type if event else "-",
        event.contact_id if event else "-",
        (time.perf_counter() - started) * 1000 if started else 0.0,
    )
    return response
