"""Entra ID bearer tokens → Dynamics users and roles, against the Dataverse emulator."""

from __future__ import annotations

import uuid

import pytest
from flask import g

from bridge.app import create_app
from bridge.auth import ORG_HEADER, requires_role
from bridge.config import load_settings
from bridge.connections import create_connection
from bridge.crypto import new_secret_key
from bridge.runtime import Runtime, set_runtime

CLIENT_ID = "0b1e7c55-1111-4222-8333-444455556666"
SECRET = "bridge-secret"


@pytest.fixture
def dataverse():
    from emulators.dataverse import DataverseEmulator

    emu = DataverseEmulator(apps={CLIENT_ID: SECRET}).start()
    yield emu
    emu.stop()


@pytest.fixture
def app(dataverse, sqlite_database_url, redis_url):
    settings = load_settings(
        {
            "BRIDGE_SECRET_KEY": new_secret_key(),
            "DATABASE_URL": sqlite_database_url,
            "REDIS_URL": redis_url,
            "ENTRA_CLIENT_ID": CLIENT_ID,
            "ENTRA_CLIENT_SECRET": SECRET,
            "ENTRA_AUTHORITY_HOST": dataverse.authority_host,
            "BRIDGE_CA_BUNDLE": dataverse.ca_bundle,
            "BRIDGE_ALLOW_LOOPBACK_HOSTS": "1",
        }
    )
    app = create_app(settings)
    runtime = Runtime(settings)
    with runtime.db.session() as session:
        create_connection(
            session,
            runtime.secrets,
            dataverse_url=dataverse.url,
            dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id,
        )

    @app.get("/test-only/admin")
    @requires_role("admin")
    def admin_only():
        return {"user": g.user.name}

    @app.get("/test-only/sales")
    @requires_role("sales")
    def sales_only():
        return {"user": g.user.name}

    yield app
    set_runtime(None)


def _user(dataverse, roles, name="Jane Doe"):
    oid = str(uuid.uuid4())
    dataverse.add_system_user(name, oid, roles=roles)
    return oid


def _get(app, path, token=None, org=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if org:
        headers[ORG_HEADER] = org
    return app.test_client().get(path, headers=headers)


def test_admin_and_sales_roles_come_from_dynamics(app, dataverse):
    admin = _user(dataverse, ["ActiveCampaign Admin"], "Sam Admin")
    seller = _user(dataverse, ["Salesperson", "ActiveCampaign User"])
    admin_token = dataverse.mint_user_token(admin, aud=CLIENT_ID)
    seller_token = dataverse.mint_user_token(seller, aud=f"api://{CLIENT_ID}", ver="1.0")

    me = _get(app, "/api/v1/me", admin_token, dataverse.url)
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["is_admin"] is True and me.get_json()["is_sales_user"] is False
    assert me.get_json()["connected"] is True and me.get_json()["name"] == "Sam Admin"

    assert _get(app, "/test-only/admin", admin_token, dataverse.url).status_code == 200
    refused = _get(app, "/test-only/sales", admin_token, dataverse.url)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "user_role_required"

    assert _get(app, "/test-only/sales", seller_token, dataverse.url).status_code == 200
    refused = _get(app, "/test-only/admin", seller_token, dataverse.url)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "admin_role_required"


def test_system_administrator_is_an_admin_and_org_header_is_optional_for_one_org(app, dataverse):
    sysadmin = _user(dataverse, ["System Administrator"])
    response = _get(app, "/test-only/admin", dataverse.mint_user_token(sysadmin, aud=CLIENT_ID))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda emu, oid: None, "missing_token"),
        (lambda emu, oid: "not-a-jwt", "invalid_token"),
        (lambda emu, oid: emu.mint_user_token(oid, aud="someone-else"), "invalid_token"),
        (
            lambda emu, oid: emu.mint_user_token(oid, aud=CLIENT_ID, expires_in=-600),
            "token_expired",
        ),
    ],
)
def test_bad_tokens_get_401_with_a_reason(app, dataverse, make_token, code):
    oid = _user(dataverse, ["ActiveCampaign Admin"])
    response = _get(app, "/api/v1/me", make_token(dataverse, oid), dataverse.url)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == code


def test_tampered_token_is_rejected(app, dataverse):
    oid = _user(dataverse, ["ActiveCampaign Admin"])
    header, payload, signature = dataverse.mint_user_token(oid, aud=CLIENT_ID).split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert _get(app, "/api/v1/me", forged, dataverse.url).status_code == 401


def test_other_tenant_cannot_reach_this_org(app, dataverse):
    oid = _user(dataverse, ["ActiveCampaign Admin"])
    other_tenant = str(uuid.uuid4())
    token = dataverse.mint_user_token(oid, aud=CLIENT_ID, tid=other_tenant)
    response = _get(app, "/test-only/admin", token, dataverse.url)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "unknown_organization"


def test_person_who_is_not_a_dynamics_user_is_refused(app, dataverse):
    token = dataverse.mint_user_token(str(uuid.uuid4()), aud=CLIENT_ID)
    response = _get(app, "/api/v1/me", token, dataverse.url)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "not_a_dynamics_user"


def test_role_lookups_are_cached(app, dataverse):
    oid = _user(dataverse, ["ActiveCampaign Admin"])
    token = dataverse.mint_user_token(oid, aud=CLIENT_ID)
    _get(app, "/api/v1/me", token, dataverse.url)
    before = len(dataverse.request_log)
    for _ in range(3):
        assert _get(app, "/api/v1/me", token, dataverse.url).status_code == 200
    assert len(dataverse.request_log) == before


def test_cors_only_for_the_connected_org(app, dataverse):
    oid = _user(dataverse, ["ActiveCampaign Admin"])
    token = dataverse.mint_user_token(oid, aud=CLIENT_ID)
    ok = _get(app, "/api/v1/me", token, dataverse.url, Origin=dataverse.url)
    assert ok.headers["Access-Control-Allow-Origin"] == dataverse.url
    evil = _get(app, "/api/v1/me", token, dataverse.url, Origin="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_openapi_document_is_served(app):
    doc = app.test_client().get("/api/v1/openapi.json")
    assert doc.status_code == 200
    assert "/api/v1/me" in doc.get_json()["paths"]
