"""HTTP endpoints of the bridge, one blueprint per caller."""

from __future__ import annotations

from flask import Flask, current_app

from bridge.runtime import Runtime

RUNTIME_EXTENSION = "bridge.runtime"


def current_runtime() -> Runtime:
    """The runtime of the app serving this request.

    Views read it from the app rather than the process global so that several
    apps (tests, a sandbox next to a real one) can live in one process.
    """
    return current_app.extensions[RUNTIME_EXTENSION]


def register_blueprints(app: Flask) -> None:
    from bridge.web.activecampaign_webhooks import bp as activecampaign_webhooks_bp
    from bridge.web.dataverse_webhooks import bp as dataverse_webhooks_bp
    from bridge.web.health import bp as health_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(dataverse_webhooks_bp)
    app.register_blueprint(activecampaign_webhooks_bp)
