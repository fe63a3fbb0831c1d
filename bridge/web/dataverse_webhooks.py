"""``POST /webhooks/dataverse``: the fast path from a Dynamics change to a queued sync job.

The view only parses, authorizes, enqueues and answers; the worker re-reads the
row from Dataverse, so nothing in the body beyond "which record changed" is
trusted. Dataverse waits for the answer (a synchronous step blocks the user's
save), so the work here is a few Redis round trips and at most one indexed
database lookup, which is cached.

Answers: 202 for anything handled (accepted, ignored, duplicate); 401/403 for
bad credentials; 400/413/415 for bodies we cannot read; 503 with
``Retry-After`` when Redis or the database is down, because 502/503/504 are the
only statuses Dataverse retries.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.crypto import hash_secret, secret_matches
from bridge.db import Database
from bridge.echo import is_bridge_write
from bridge.errors import ApiError
from bridge.models import Connection
from bridge.queueing import accept_webhook_change, seen_key
from bridge.schemas.dataverse import WebhookEvent, load_webhook_event
from bridge.web import current_runtime

log = logging.getLogger(__name__)

bp = Blueprint("dataverse_webhooks", __name__)

KEY_HEADER = "X-Bridge-Webhook-Key"  # authtype 5 (HttpHeader)
KEY_QUERY_PARAM = "code"  # authtype 4 (WebhookKey)
SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
SYNCED_ENTITIES = frozenset({"lead", "contact"})
SYNCED_MESSAGES = frozenset({"Create", "Update", "Delete"})
KEY_CACHE_CONFIG = "DATAVERSE_WEBHOOK_KEY_CACHE_SECONDS"
DEFAULT_KEY_CACHE_SECONDS = 5.0


# --- authentication -----------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConnection:
    """The little the webhook needs of a connection (safe to cache: no secrets, only a hash)."""

    id: int
    org_id: str
    key_hash: str
    app_user_id: str | None = None  # the bridge's own application user (echo suppression)


class ConnectionKeyCache:
    """In-process ``key hash → connection`` cache with a short TTL.

    Every delivery would otherwise cost a database round trip. A rotated or
    revoked key keeps working for at most ``ttl`` seconds in each process.
    Unknown keys are not cached, so a freshly rotated key works at once.
    """

    def __init__(self, ttl: float, max_entries: int = 1024) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, WebhookConnection]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> WebhookConnection | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires_at, connection = entry
        if time.monotonic() >= expires_at:
            with self._lock:
                self._entries.pop(key_hash, None)
            return None
        return connection

    def put(self, key_hash: str, connection: WebhookConnection) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory; refilled from the database
            self._entries[key_hash] = (time.monotonic() + self.ttl, connection)


def find_connection_for_key(
    db: Database, cache: ConnectionKeyCache, key: str
) -> WebhookConnection | None:
    """The connection whose Dataverse webhook key is ``key``, or None.

    Looked up by the key's SHA-256 (an equality match on the stored hash), then
    confirmed with a constant-time comparison.
    """
    if not key:
        return None
    key_hash = hash_secret(key)
    connection = cache.get(key_hash)
    if connection is None:
        with db.session() as session:
            row = session.execute(
                select(
                    Connection.id,
                    Connection.dataverse_org_id,
                    Connection.dataverse_webhook_key_hash,
                    Connection.dataverse_app_user_id,
                )
                .where(Connection.dataverse_webhook_key_hash == key_hash)
                .limit(1)
            ).first()
        if row is None:
            return None
        connection = WebhookConnection(
            row[0], row[1].lower(), row[2], (row[3] or "").lower() or None
        )
        cache.put(key_hash, connection)
    return connection if secret_matches(key, connection.key_hash) else None


def _key_cache() -> ConnectionKeyCache:
    cache = current_app.extensions.get("bridge.dataverse_key_cache")
    if cache is None:
        ttl = float(current_app.config.get(KEY_CACHE_CONFIG, DEFAULT_KEY_CACHE_SECONDS))
        cache = current_app.extensions.setdefault(
            "bridge.dataverse_key_cache", ConnectionKeyCache(ttl)
        )
    return cache


def _authenticate() -> WebhookConnection:
    key = request.headers.get(KEY_HEADER) or request.args.get(KEY_QUERY_PARAM) or ""
    if not key:
        raise ApiError(
            401,
            "missing_webhook_key",
            f"Send the connection's webhook key as ?{KEY_QUERY_PARAM}= or the {KEY_HEADER} header.",
        )
    connection = find_connection_for_key(current_runtime().db, _key_cache(), key)
    if connection is None:
        raise ApiError(401, "invalid_webhook_key", "The webhook key is not valid.")
    return connection


# --- body -----------------------------------------------------------------------------


def _refuse_announced_oversize(max_body_bytes: int) -> None:
    """Refuse a body announced as too large before spending a database lookup on it."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise RequestEntityTooLarge()


def _string_keys(messages: Any) -> Any:
    """Marshmallow keys list errors by index (int); JSON objects need string keys."""
    if isinstance(messages, dict):
        return {str(key): _string_keys(value) for key, value in messages.items()}
    if isinstance(messages, list):
        return [_string_keys(item) for item in messages]
    return messages


def _read_event(max_body_bytes: int) -> WebhookEvent:
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "The body must be JSON (Content-Type: application/json)."
        )
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= max_body_bytes:
        # A chunked body is cut off at MAX_CONTENT_LENGTH without an error; a body
        # that reached the limit is treated as over it rather than parsed truncated.
        raise RequestEntityTooLarge()
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from None
    try:
        return load_webhook_event(
            payload, size_exceeded_header=SIZE_EXCEEDED_HEADER in request.headers
        )
    except ValidationError as exc:
        raise ApiError(
            400,
            "invalid_payload",
            "The body is not a Dataverse RemoteExecutionContext.",
            fields=_string_keys(
                exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            ),
        ) from None


# --- view -----------------------------------------------------------------------------


def _answer(outcome: str, **body: Any) -> Response:
    g.webhook_outcome = outcome
    response = jsonify(body)
    response.status_code = 202
    return response


@bp.post("/webhooks/dataverse", strict_slashes=False)
def receive_dataverse_webhook() -> Response:
    runtime = current_runtime()
    _refuse_announced_oversize(runtime.settings.max_body_bytes)
    connection = _authenticate()
    g.webhook_connection = connection
    event = _read_event(runtime.settings.max_body_bytes)
    g.webhook_event = event
    if event.org_id != connection.org_id:
        raise ApiError(
            403,
            "organization_mismatch",
            "The payload's OrganizationId does not belong to this webhook key's connection.",
        )

    if event.entity not in SYNCED_ENTITIES or event.message not in SYNCED_MESSAGES:
        return _answer(
            "ignored",
            status="ignored",
            reason=f"{event.message} of {event.entity} is not synced",
            operation_id=event.operation_id,
        )
    if is_bridge_write(event.tag):
        return _answer(
            "ignored",
            status="ignored",
            reason="bridge's own write",
            operation_id=event.operation_id,
        )
    if connection.app_user_id and (event.user_id or "").lower() == connection.app_user_id:
        # Written by the bridge's application user without a tag (a path that forgot it,
        # or a plug-in step running as that user): still the bridge's own change.
        return _answer(
            "ignored",
            status="ignored",
            reason="bridge's application user",
            operation_id=event.operation_id,
        )

    verdict = accept_webhook_change(
        runtime.redis,
        seen_key(event.org_id, event.operation_id, event.step_id),
        connection.id,
        event.entity,
        event.record_id,
        event.message,
    )
    if verdict == "duplicate":
        return _answer("duplicate", status="duplicate", operation_id=event.operation_id)
    queued = verdict == "queued"
    g.webhook_queued = queued
    return _answer("accepted", status="accepted", queued=queued, operation_id=event.operation_id)


@bp.before_request
def _start_timer() -> None:
    g.webhook_started = time.perf_counter()


@bp.after_request
def _log_delivery(response: Response) -> Response:
    """One INFO line per delivery, whatever the outcome; never the key or the query string."""
    event: WebhookEvent | None = g.get("webhook_event")
    connection: WebhookConnection | None = g.get("webhook_connection")
    started = g.get("webhook_started")
    elapsed_ms = (time.perf_counter() - started) * 1000 if started else 0.0
    outcome = g.get("webhook_outcome") or _error_code(response)
    log.info(
        "dataverse webhook %s status=%s connection=%s org=%s entity=%s record=%s message=%s "
        "operation=%s step=%s queued=%s size_exceeded=%s ms=%.1f",
        outcome,
        response.status_code,
        connection.id if connection else "-",
        event.org_id if event else "-",
        event.entity if event else "-",
        event.record_id if event else "-",
        event.message if event else "-",
        event.operation_id if event else "-",
        event.step_id if event else "-",
        g.get("webhook_queued", "-"),
        event.size_exceeded if event else "-",
        elapsed_ms,
    )
    return response


def _error_code(response: Response) -> str:
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", "error"))
    return "error"
