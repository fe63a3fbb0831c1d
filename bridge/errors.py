"""JSON error responses for every failure the web process can produce.

Callers (Dataverse, the web resources, ActiveCampaign) only ever get
``{"error": {"code": ..., "message": ..., "fields": {...}}}``: never an HTML
page, never a stack trace, never a secret. Unexpected exceptions are logged
with their traceback and answered with a generic 500. Redis or the database
being unreachable is a 503 with ``Retry-After``, because Dataverse retries a
503 (once) and the scheduled sync repairs whatever is still missed.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# Machine codes for the standard HTTP errors werkzeug raises.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


class ApiError(Exception):
    """Raise from a view to answer with a JSON error; ``message`` must hold no secrets."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The one JSON error shape every endpoint answers with."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _log_path() -> str:
    """The request path for a log line, without the secret of an ActiveCampaign webhook URL."""
    path = request.path
    if path.startswith("/webhooks/activecampaign/"):
        rest = path[len("/webhooks/activecampaign/"):]
        path = "/webhooks/activecampaign/[redacted]" + rest[rest.find("/"):] if "/" in rest \
            else "/webhooks/activecampaign/[redacted]"
    return path


def _handle_api_error(error: ApiError) -> Response:
    return error_response(
        error.status, error.code, error.message, fields=error.fields, headers=error.headers
    )


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {}
    valid_methods = getattr(error, "valid_methods", None)
    if valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    message = error.description or error.name
    if status == 413:
        message = "The request body is larger than this server accepts."
    code = _HTTP_CODES.get(status, error.name.lower().replace(" ", "_"))
    fields = None
    # webargs (flask-smorest's request parsing) attaches marshmallow's messages here.
    messages = (getattr(error, "data", None) or {}).get("messages")
    if status in (400, 422) and messages:
        code, message = "invalid_request", "Some fields are missing or invalid."
        fields = messages.get("json", messages) if isinstance(messages, dict) else messages
    return error_response(status, code, message, fields=fields, headers=headers)


def _handle_redis_down(_error: Exception) -> Response:
    log.warning("redis unreachable while serving %s %s", request.method, _log_path())
    return error_response(
        503,
        "redis_unavailable",
        "The queue is temporarily unreachable; retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _handle_database_down(_error: Exception) -> Response:
    log.warning("database unreachable while serving %s %s", request.method, _log_path())
    return error_response(
        503,
        "database_unavailable",
        "The database is temporarily unreachable; retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _handle_unexpected(error: Exception) -> Response:
    # request.path, never request.url: the query string can carry a webhook key.
    log.error("unhandled error serving %s %s", request.method, _log_path(), exc_info=error)
    return error_response(500, "internal_error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    """Make every error the app can raise answer in the JSON shape above."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    for exc_type in _REDIS_DOWN:
        app.register_error_handler(exc_type, _handle_redis_down)
    for exc_type in _DATABASE_DOWN:
        app.register_error_handler(exc_type, _handle_database_down)
    app.register_error_handler(Exception, _handle_unexpected)
