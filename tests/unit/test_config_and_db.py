"""Configuration parsing, secret handling and the migrated schema."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from bridge.config import ConfigError, load_settings
from bridge.connections import (
    activecampaign_credentials,
    connection_for_org,
    create_connection,
    rotate_dataverse_webhook_key,
)
from bridge.crypto import SecretBox, new_secret_key, secret_matches
from bridge.db import Database
from bridge.models import LinkStatus, RecordLink

KEY = new_secret_key()


def test_defaults_need_only_the_secret_key():
    settings = load_settings({"BRIDGE_SECRET_KEY": KEY})
    assert settings.database_url == "sqlite:///instance/bridge.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert KEY not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BRIDGE_SECRET_KEY is not set"),
        ({"BRIDGE_SECRET_KEY": "short"}, "BRIDGE_SECRET_KEY"),
        ({"BRIDGE_SECRET_KEY": KEY, "DATABASE_URL": "mysql://x"}, "DATABASE_URL must be a URL"),
        ({"BRIDGE_SECRET_KEY": KEY, "REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"BRIDGE_SECRET_KEY": KEY, "ENTRA_CLIENT_ID": "abc"}, "set together"),
        ({"BRIDGE_SECRET_KEY": KEY, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"BRIDGE_SECRET_KEY": KEY, "ENTRA_AUTHORITY_HOST": "http://x"}, "https"),
        ({"BRIDGE_SECRET_KEY": KEY, "BRIDGE_CA_BUNDLE": "/nope.pem"}, "not a file"),
        ({"BRIDGE_SECRET_KEY": KEY, "AC_REQUESTS_PER_SECOND": "0"}, "greater than 0"),
    ],
)
def test_bad_settings_fail_with_one_line(env, message):
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_secret_box_round_trip_and_wrong_key():
    box = SecretBox(load_settings({"BRIDGE_SECRET_KEY": KEY}).secret_key)
    token = box.encrypt("ac-api-key-1234")
    assert "ac-api-key" not in token
    assert box.decrypt(token) == "ac-api-key-1234"
    other = SecretBox(new_secret_key().encode())
    with pytest.raises(ValueError, match="cannot be decrypted"):
        other.decrypt(token)


def test_schema_and_connection_round_trip(database_url):
    db = Database(database_url)
    tables = set(inspect(db.engine).get_table_names())
    assert {"connections", "record_links", "sync_runs", "alembic_version"} <= tables
    box = SecretBox(KEY.encode())
    with db.session() as session:
        conn = create_connection(
            session,
            box,
            dataverse_url="https://org.crm.dynamics.com/",
            dataverse_org_id="AAAAAAAA-0000-0000-0000-000000000001",
            tenant_id="bbbbbbbb-0000-0000-0000-000000000002",
            ac_api_url="https://acct.api-us1.com",
            ac_api_key="secret-key-9876",
        )
        webhook_key = rotate_dataverse_webhook_key(conn)
        session.add(RecordLink(connection=conn, entity="lead", dynamics_id="x", email="a@b.c"))
    with db.session() as session:
        conn = connection_for_org(session, "aaaaaaaa-0000-0000-0000-000000000001")
        assert conn is not None and conn.dataverse_url == "https://org.crm.dynamics.com"
        assert conn.ac_api_key_last4 == "9876"
        assert "secret-key" not in (conn.ac_api_key_encrypted or "")
        assert activecampaign_credentials(conn, box).api_key == "secret-key-9876"
        assert secret_matches(webhook_key, conn.dataverse_webhook_key_hash)
        assert not secret_matches(webhook_key + "x", conn.dataverse_webhook_key_hash)
        link = session.scalars(select(RecordLink)).one()
        assert link.status == LinkStatus.PENDING
    db.engine.dispose()
