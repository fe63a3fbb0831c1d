"""Sync Settings API: global switch, frequency, initial sync start and progress."""

from __future__ import annotations

from sqlalchemy import select

from bridge.models import Connection, SyncRun

PATH = "/api/v1/admin/sync-settings"


def test_sync_settings_before_connecting_is_400(admin_api):
    oid = admin_api.user(["System Administrator"])
    response = admin_api.call("GET", PATH, oid)
    assert response.status_code in (400, 403), response.get_json()


def test_switch_frequency_and_initial_sync(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    body = admin_api.call("GET", PATH, oid).get_json()
    assert body["global_sync_enabled"] is True and body["sync_frequency_hours"] == 4
    assert body["frequencies"] == [1, 2, 4, 6, 8, 12, 24]
    assert body["initial_sync"]["status"] == "never"

    off = admin_api.call("PUT", PATH, oid, json={"global_sync_enabled": False})
    assert off.status_code == 200 and off.get_json()["global_sync_enabled"] is False
    on = admin_api.call("PUT", PATH, oid, json={"global_sync_enabled": True})
    assert on.status_code == 200, on.get_json()
    assert on.get_json()["initial_sync"]["status"] == "queued"
    with admin_api.runtime.db.session() as session:
        runs = session.scalars(select(SyncRun).where(SyncRun.kind == "initial")).all()
        assert len(runs) == 1
    # Switching off and on again does not start a second initial sync.
    admin_api.call("PUT", PATH, oid, json={"global_sync_enabled": False})
    admin_api.call("PUT", PATH, oid, json={"global_sync_enabled": True})
    with admin_api.runtime.db.session() as session:
        assert session.query(SyncRun).count() == 1

    saved = admin_api.call("PUT", PATH, oid, json={"sync_frequency_hours": 12})
    assert saved.get_json()["sync_frequency_hours"] == 12
    with admin_api.runtime.db.session() as session:
        assert session.scalar(select(Connection.sync_frequency_hours)) == 12


def test_malformed_sync_settings_are_400_naming_the_field(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    for payload, field in (
        ({"sync_frequency_hours": 3}, "sync_frequency_hours"),
        ({"sync_frequency_hours": "often"}, "sync_frequency_hours"),
        ({"global_sync_enabled": "maybe"}, "global_sync_enabled"),
        ({"surprise": True}, "surprise"),
    ):
        response = admin_api.call("PUT", PATH, oid, json=payload)
        assert response.status_code == 400, payload
        assert field in response.get_json()["error"]["fields"]


def test_progress_is_read_from_the_latest_initial_run(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    with admin_api.runtime.db.session() as session:
        connection = session.scalars(select(Connection)).one()
        connection.initial_sync_status = "running"
        session.add(
            SyncRun(
                connection_id=connection.id,
                kind="initial",
                status="running",
                records_total=200,
                records_done=50,
                records_failed=2,
            )
        )
    progress = admin_api.call("GET", f"{PATH}/initial-sync", oid).get_json()
    assert progress["total"] == 200 and progress["done"] == 50 and progress["failed"] == 2
    assert progress["status"] == "running" and progress["rate_per_s"] >= 0
