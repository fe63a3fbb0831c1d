"""Liveness and readiness probes for load balancers and orchestrators.

``/healthz`` only says the process serves requests (restart it if not);
``/readyz`` says whether it can do useful work, naming the dependency that is
down so an operator knows where to look. Neither exposes URLs or error text,
which could contain credentials.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from bridge.errors import error_response
from bridge.web import current_runtime

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _check(name: str, probe) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready"; the class name is enough
        log.warning("readiness: %s is unreachable (%s)", name, type(exc).__name__)
        return "unreachable"
    return "ok"


@bp.get("/readyz")
def readyz() -> Response:
    runtime = current_runtime()
    checks = {
        "database": _check("database", runtime.db.ping),
        "redis": _check("redis", runtime.redis.ping),
    }
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return error_response(
            503,
            "not_ready",
            f"Not ready: {' and '.join(down)} unreachable.",
            fields=checks,
            headers={"Retry-After": "5"},
        )
    return jsonify({"status": "ready", "checks": checks})
