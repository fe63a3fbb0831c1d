"""Helpers shared by the web tests: settings, connections, payloads and RQ inspection."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import redis as redis_lib
from rq import Queue

from bridge.config import Settings
from bridge.connections import create_connection, rotate_dataverse_webhook_key
from bridge.crypto import SecretBox, new_secret_key
from bridge.db import Database

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "dataverse"
FIXTURE_ORG_ID = "8f2b0c4e-6f1a-4a77-9c1e-2f9d7b1c3a10"
SECRET_KEY = new_secret_key().encode()


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url, redis_url=redis_url, secret_key=SECRET_KEY, **overrides
    )


def add_connection(database_url: str, org_id: str) -> tuple[int, str]:
    """A connection for ``org_id``; returns its id and the plain webhook key (shown once)."""
    db = Database(database_url)
    try:
        with db.session() as session:
            connection = create_connection(
                session,
                SecretBox(SECRET_KEY),
                dataverse_url=f"https://org{org_id[:8]}.crm.dynamics.com",
                dataverse_org_id=org_id,
                tenant_id=str(uuid.uuid4()),
            )
            key = rotate_dataverse_webhook_key(connection)
            connection_id = connection.id
    finally:
        db.engine.dispose()
    return connection_id, key


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES_DIR / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES_DIR / name).read_bytes()


def with_changes(payload: dict[str, Any], **top_level: Any) -> dict[str, Any]:
    """A deep copy of ``payload`` with some top-level keys replaced."""
    changed = copy.deepcopy(payload)
    changed.update(top_level)
    return changed


def realtime_jobs(redis_url: str) -> list:
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return Queue("realtime", connection=client).jobs
    finally:
        client.close()


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the bridge's JSON error shape and ``code``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return error
