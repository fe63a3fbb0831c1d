"""``/api/v1/admin/data-configuration/<entity>``: Data Configuration
(see ``bridge.admin.data_configuration``)."""

from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint

from bridge.admin import data_configuration as logic
from bridge.admin import require_connection
from bridge.auth import requires_role
from bridge.schemas.admin import EntityConfigOutSchema, EntityConfigSchema, FieldMetadataSchema
from bridge.web import current_runtime

blp = Blueprint(
    "admin_data_configuration",
    __name__,
    url_prefix="/api/v1/admin",
    description="Data Configuration: sync on/off, criteria and field mappings per table",
)


def _connection_id() -> int:
    require_connection(current_runtime(), g.user.connection_id)
    return g.user.connection_id


@blp.route("/data-configuration/<string:entity>", methods=["GET"])
@blp.response(200, EntityConfigOutSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def get_configuration(entity):
    return logic.read(current_runtime(), _connection_id(), entity)


@blp.route("/data-configuration/<string:entity>", methods=["PUT"])
@blp.arguments(EntityConfigSchema, error_status_code=400)
@blp.response(200, EntityConfigOutSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def put_configuration(body, entity):
    return logic.save(current_runtime(), _connection_id(), entity, body)


@blp.route("/data-configuration/<string:entity>/fields", methods=["GET"])
@blp.response(200, FieldMetadataSchema)
@blp.doc(
    security=[{"entra": []}],
    parameters=[{"in": "query", "name": "refresh", "schema": {"type": "boolean"},
                 "description": "read the metadata again instead of the short cache"}],
)
@requires_role("admin")
def get_fields(entity):
    refresh = request.args.get("refresh", "").lower() in ("1", "true")
    return logic.field_metadata(current_runtime(), _connection_id(), entity, refresh=refresh)
