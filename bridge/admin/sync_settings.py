"""Sync Settings: the global switch, the scheduled-sync frequency, the initial sync.

Switching global sync on for the first time (the initial sync has never run) starts the
initial sync through the sync engine's ``workers.initial_sync.start_initial_sync``; its
progress comes from ``workers.initial_sync.initial_sync_progress``.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ApiError
from bridge.models import Connection
from bridge.runtime import Runtime
from bridge.schemas.admin import FREQUENCIES

NEVER_RAN = ("never", "", None)


def _progress(runtime: Runtime, connection_id: int) -> dict[str, Any]:
    from workers.initial_sync import initial_sync_progress

    return initial_sync_progress(runtime, connection_id)


def start_initial_sync(runtime: Runtime, connection_id: int) -> int:
    from workers.initial_sync import start_initial_sync as start

    return start(runtime, connection_id)


def read(runtime: Runtime, connection_id: int) -> dict[str, Any]:
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise ApiError(404, "not_connected", "this organization is not connected")
        body = {
            "global_sync_enabled": connection.global_sync_enabled,
            "sync_frequency_hours": connection.sync_frequency_hours,
            "frequencies": list(FREQUENCIES),
        }
    body["initial_sync"] = _progress(runtime, connection_id)
    return body


def update(runtime: Runtime, connection_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the changes; turning global sync on starts the initial sync if it never ran."""
    start = False
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise ApiError(404, "not_connected", "this organization is not connected")
        if "sync_frequency_hours" in changes:
            connection.sync_frequency_hours = changes["sync_frequency_hours"]
        if "global_sync_enabled" in changes:
            turning_on = changes["global_sync_enabled"] and not connection.global_sync_enabled
            connection.global_sync_enabled = changes["global_sync_enabled"]
            start = turning_on and connection.initial_sync_status in NEVER_RAN
    if start:
        start_initial_sync(runtime, connection_id)
    return read(runtime, connection_id)
