"""``GET /api/v1/me``: who the bridge thinks the caller is, and what they may do.

The pages and the ribbon use it to show or hide features; the server enforces
the same roles on every endpoint, so the browser is never trusted.
"""

from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from bridge.auth import requires_role

blp = Blueprint("me", __name__, url_prefix="/api/v1", description="The signed-in user")


class MeSchema(ma.Schema):
    systemuser_id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    org_url = ma.fields.String(required=True)
    connected = ma.fields.Boolean(required=True)
    roles = ma.fields.List(ma.fields.String(), required=True)
    is_admin = ma.fields.Boolean(required=True)
    is_sales_user = ma.fields.Boolean(required=True)


@blp.route("/me")
@blp.response(200, MeSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("any", allow_unconnected=True)
def me():
    user = g.user
    return {
        "systemuser_id": user.systemuser_id,
        "name": user.name,
        "org_url": user.org_url,
        "connected": user.connection_id is not None,
        "roles": sorted(user.roles),
        "is_admin": user.is_admin,
        "is_sales_user": user.is_sales_user,
    }
