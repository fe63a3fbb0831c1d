"""The versioned JSON API under ``/api/v1`` (flask-smorest): schemas are the contract.

Each feature adds a ``flask_smorest.Blueprint`` to ``API_BLUEPRINTS``; the
OpenAPI document generated from their marshmallow schemas is served at
``/api/v1/openapi.json``. Callers are the web resources running inside
Dynamics, authenticated by ``bridge.auth``; CORS is granted only to the
organization the caller works in.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_smorest import Api
from sqlalchemy import select

from bridge.auth import ORG_HEADER, is_dynamics_host, normalize_org_url
from bridge.errors import ApiError
from bridge.models import Connection

API_PREFIX = "/api/v1"


def _blueprints() -> list:
    from bridge.web.admin import BLUEPRINTS as admin_blueprints
    from bridge.web.me import blp as me_blp
    from bridge.web.sales import BLUEPRINTS as sales_blueprints

    return [me_blp, *sales_blueprints, *admin_blueprints]


def _allowed_origin(origin: str) -> bool:
    """A browser origin may call the API if it is a connected org (or a Dynamics host)."""
    from bridge.web import current_runtime

    runtime = current_runtime()
    try:
        origin = normalize_org_url(origin)
    except ApiError:
        return False
    if is_dynamics_host(origin, runtime.settings):
        return True
    with runtime.db.session() as session:
        urls = session.scalars(select(Connection.dataverse_url)).all()
    return origin in {normalize_org_url(url) for url in urls}


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and request.path.startswith(API_PREFIX) and _allowed_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = (
            f"Authorization, Content-Type, {ORG_HEADER}"
        )
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def register_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="ActiveCampaign Bridge",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = Api(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {
                    "entra": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            }
        },
    )
    for blp in _blueprints():
        api.register_blueprint(blp)
    app.after_request(_cors)
    return api
