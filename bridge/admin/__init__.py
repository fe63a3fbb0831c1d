"""The admin experience's logic, behind the thin views of ``bridge.web.admin``.

Plain functions taking the ``Runtime`` and the signed-in ``DynamicsUser``; they raise
``bridge.errors.ApiError`` (with per-field ``fields`` for anything the page shows beside a
field) and never return secrets.
"""

from __future__ import annotations

from bridge.errors import ApiError
from bridge.models import Connection
from bridge.runtime import Runtime


def require_connection(runtime: Runtime, connection_id: int | None) -> None:
    """400 unless the caller's org is connected to an ActiveCampaign account."""
    if connection_id is None:
        raise ApiError(400, "not_connected", "connect an ActiveCampaign account first (Settings)")
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None or not connection.ac_api_key_encrypted:
            raise ApiError(
                400, "not_connected", "connect an ActiveCampaign account first (Settings)"
            )
