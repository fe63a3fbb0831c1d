"""The Flask app: authentication, rate limiting, request logging and error bodies around the
route blueprints. Order per request: auth (403) → 5 rps window (429) → handler, so only
authenticated requests use the account's budget, and every API request lands in the log.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import api_catalog, api_contacts, api_marketing, control, v1
from .httputil import ApiError

if TYPE_CHECKING:
    from .emulator import ActiveCampaignEmulator

V1_PATH = "/admin/api.php"
CONTROL_PREFIX = "/_emulator"


def create_app(emu: ActiveCampaignEmulator) -> Flask:
    app = Flask("activecampaign_emulator")
    app.json.sort_keys = False  # AC's key order (ids last) is kept for readable diffs
    app.register_blueprint(api_contacts.blueprint(emu), url_prefix="/api/3")
    app.register_blueprint(api_catalog.blueprint(emu), url_prefix="/api/3")
    app.register_blueprint(api_marketing.blueprint(emu), url_prefix="/api/3")
    app.register_blueprint(v1.blueprint(emu))
    app.register_blueprint(control.blueprint(emu), url_prefix=CONTROL_PREFIX)

    @app.before_request
    def guard() -> Response | tuple[Response, int] | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        g.ac_ts = time.monotonic()
        g.ac_admitted = False
        g.ac_remaining = emu.limiter.limit
        token = request.headers.get("Api-Token")
        if request.path == V1_PATH:
            token = token or request.values.get("api_key")
        if token != emu.api_key:
            if request.path == V1_PATH:
                return jsonify(v1.unauthorized())
            return jsonify({"message": "Forbidden"}), 403
        admitted, remaining = emu.limiter.try_acquire(g.ac_ts)
        g.ac_admitted, g.ac_remaining = admitted, remaining
        if not admitted:
            return jsonify({"message": "Too Many Requests"}), 429
        fault = emu.take_fault(request.path)
        if fault is not None:
            return Response("<html><body>Service Unavailable</body></html>", status=fault,
                            mimetype="text/html")
        return None

    @app.after_request
    def finish(response: Response) -> Response:
        if "ac_ts" not in g:
            return response
        response.headers["RateLimit-Limit"] = str(emu.limiter.limit)
        response.headers["RateLimit-Remaining"] = str(g.ac_remaining)
        if response.status_code == 429:
            response.headers["Retry-After"] = str(emu.retry_after_seconds)
        emu.log.add(
            {
                "ts": g.ac_ts,
                "wall": time.time(),
                "method": request.method,
                "path": request.path,
                "query": request.query_string.decode("latin-1"),
                "status": response.status_code,
                "admitted": g.ac_admitted,
            }
        )
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        return jsonify(exc.body), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 404:
            message = f"No route matches {request.method} {request.path}"
        else:
            message = exc.description or exc.name
        return jsonify({"message": message}), status

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("emulator error")
        return jsonify({"message": f"Emulator error: {exc.__class__.__name__}: {exc}"}), 500

    return app
