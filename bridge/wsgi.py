"""WSGI entry point: ``gunicorn bridge.wsgi:app``.

A bad setting stops the process with its one-line explanation instead of a
traceback, so the operator reads what to fix.
"""

from __future__ import annotations

from bridge.app import create_app
from bridge.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"bridge: configuration error: {exc}") from None
