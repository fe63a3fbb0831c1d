"""``/api/v1/admin/sync-health``: Sync Health (see ``bridge.admin.sync_health``)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from bridge.admin import require_connection
from bridge.admin import sync_health as logic
from bridge.auth import requires_role
from bridge.schemas.admin import RetryResultSchema, SyncHealthSchema
from bridge.web import current_runtime

blp = Blueprint(
    "admin_sync_health",
    __name__,
    url_prefix="/api/v1/admin",
    description="Sync Health: ledger counts, failing records (with Retry), recent runs",
)


def _connection_id() -> int:
    require_connection(current_runtime(), g.user.connection_id)
    return g.user.connection_id


@blp.route("/sync-health", methods=["GET"])
@blp.response(200, SyncHealthSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def get_sync_health():
    return logic.read(current_runtime(), _connection_id())


@blp.route("/sync-health/failing/<int:link_id>/retry", methods=["POST"])
@blp.response(202, RetryResultSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("admin")
def retry(link_id):
    return logic.retry(current_runtime(), _connection_id(), link_id)
