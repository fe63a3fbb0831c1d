"""``/api/v1/admin/sync-settings``: Sync Settings (see ``bridge.admin.sync_settings``)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from bridge.admin import require_connection
from bridge.admin import sync_settings as logic
from bridge.auth import requires_role
from bridge.schemas.admin import (
    InitialSyncProgressSchema,
    SyncSettingsSchema,
    SyncSettingsUpdateSchema,
)
from bridge.web import current_runtime

blp = Blueprint(
    "admin_sync_settings",
    __name__,
    url_prefix="/api/v1/admin",
    description="Sync Settings: global sync, job frequency, initial sync",
)


def _connection_id() -> int:
    require_connection(current_runtime(), g.user.connection_id)
    return g.user.connection_id


@blp.route("/sync-settings", methods=["GET"])
@blp.response(200, SyncSettingsSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def get_sync_settings():
    return logic.read(current_runtime(), _connection_id())


@blp.route("/sync-settings", methods=["PUT"])
@blp.arguments(SyncSettingsUpdateSchema, error_status_code=400)
@blp.response(200, SyncSettingsSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def put_sync_settings(body):
    return logic.update(current_runtime(), _connection_id(), body)


@blp.route("/sync-settings/initial-sync", methods=["GET"])
@blp.response(200, InitialSyncProgressSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def initial_sync_progress():
    return logic.read(current_runtime(), _connection_id())["initial_sync"]


@blp.route("/sync-settings/initial-sync", methods=["POST"])
@blp.response(202, InitialSyncProgressSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def start_initial_sync():
    connection_id = _connection_id()
    logic.start_initial_sync(current_runtime(), connection_id)
    return logic.read(current_runtime(), connection_id)["initial_sync"]
