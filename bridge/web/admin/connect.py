"""``/api/v1/admin/connection``: Settings / Connect (see ``bridge.admin.connect``)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from bridge.admin import connect as logic
from bridge.auth import requires_role
from bridge.schemas.admin import ConnectionStatusSchema, ConnectRequestSchema
from bridge.web import current_runtime

blp = Blueprint(
    "admin_connection",
    __name__,
    url_prefix="/api/v1/admin",
    description="Settings: connect this organization to an ActiveCampaign account",
)


@blp.route("/connection", methods=["GET"])
@blp.response(200, ConnectionStatusSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin", allow_unconnected=True)
def get_connection():
    return logic.status(current_runtime(), g.user)


@blp.route("/connection", methods=["POST"])
@blp.arguments(ConnectRequestSchema, error_status_code=400)
@blp.response(200, ConnectionStatusSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin", allow_unconnected=True)
def connect(body):
    return logic.connect(current_runtime(), g.user, body["api_url"], body["api_key"])


@blp.route("/connection", methods=["DELETE"])
@blp.response(200, ConnectionStatusSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def disconnect():
    return logic.disconnect(current_runtime(), g.user)
