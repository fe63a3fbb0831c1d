"""The Flask app factory for the web process (``gunicorn 'bridge:create_app()'``)."""

from __future__ import annotations

import logging
import re

from flask import Flask

from bridge.config import Settings, load_settings
from bridge.errors import register_error_handlers
from bridge.runtime import Runtime, set_runtime
from bridge.web import RUNTIME_EXTENSION, register_blueprints
from bridge.web.api import register_api

# Query parameters that carry secrets: Dataverse's WebhookKey arrives as ?code=.
_SECRET_QUERY = re.compile(r"([?&](?:code|key|token)=)[^&\s\"']*", re.IGNORECASE)
# ActiveCampaign cannot sign its webhooks: their secret is a path segment.
_SECRET_PATH = re.compile(r"(/webhooks/activecampaign/)[^/?\s\"']+")
# Loggers that write request lines (with query strings) we do not control.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def redact_query_secrets(text: str) -> str:
    """``/webhooks/dataverse?code=abc`` → ``/webhooks/dataverse?code=[redacted]``."""
    return _SECRET_PATH.sub(r"\1[redacted]", _SECRET_QUERY.sub(r"\1[redacted]", text))


class RedactQuerySecretsFilter(logging.Filter):
    """Strips secret query values from access-log lines before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_query_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _install_log_redaction() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuerySecretsFilter) for f in logger.filters):
            logger.addFilter(RedactQuerySecretsFilter())


def _configure_logging(level: str) -> None:
    """INFO lines to stderr unless the host (gunicorn, pytest) already configured logging."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bridge").setLevel(level)
    _install_log_redaction()


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app; ``settings`` default to the environment (may raise ``ConfigError``)."""
    settings = settings if settings is not None else load_settings()
    _configure_logging(settings.log_level)

    runtime = Runtime(settings)
    # Build the clients now (no connection is opened) so requests never race to create them.
    _ = runtime.db, runtime.redis
    set_runtime(runtime)

    app = Flask("bridge")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[RUNTIME_EXTENSION] = runtime
    register_api(app)
    # After the API: our JSON error shape replaces flask-smorest's own handlers.
    register_error_handlers(app)
    register_blueprints(app)
    return app
