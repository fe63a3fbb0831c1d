"""Production settings for the web process (also used by the ingest benchmark)."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# Dataverse gives up on a webhook after 60 s; answer well before that.
timeout = 30
graceful_timeout = 30
keepalive = 5
# %(U)s is the path WITHOUT the query string: the Dataverse WebhookKey arrives as ?code=
# and must never reach a log.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server):
    """Refuse to start on a bad setting, with one line, before any worker boots."""
    import sys

    from bridge.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        sys.exit(2)
