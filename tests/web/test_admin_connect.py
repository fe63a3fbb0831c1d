"""Settings / Connect API: checks the pair with ActiveCampaign, registers both webhooks."""

from __future__ import annotations

import uuid

import pytest

from bridge.admin.connect import check_api_url
from bridge.config import load_settings
from bridge.crypto import new_secret_key
from bridge.errors import ApiError
from bridge.models import Connection
from tests.web.admin_support import AC_KEY

ADMIN = ["System Administrator"]


def _steps(dataverse):
    return dataverse.store.find("sdkmessageprocessingstep")


def test_connect_checks_key_registers_webhooks_and_hides_the_key(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    before = admin_api.call("GET", "/api/v1/admin/connection", oid)
    assert before.status_code == 200, before.get_json()
    assert before.get_json()["connected"] is False

    response = admin_api.connect(oid)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["connected"] is True and body["ac_api_key_last4"] == AC_KEY[-4:]
    assert (
        body["connected_by"] == "Sam Admin" and body["ac_api_url"] == admin_api.activecampaign.url
    )
    assert AC_KEY not in response.get_data(as_text=True)
    assert body["dataverse_webhooks"] > 0 and len(_steps(admin_api.dataverse)) > 0

    listed = admin_api.call("GET", "/api/v1/admin/connection", oid).get_json()
    assert listed["connected"] is True and listed["activecampaign_webhook"] is True
    assert AC_KEY not in str(listed)
    with admin_api.runtime.db.session() as session:
        connection = session.query(Connection).one()
        assert connection.dataverse_org_id == admin_api.dataverse.org_id
        assert AC_KEY not in (connection.ac_api_key_encrypted or "")


def _ac_webhooks(admin_api):
    import requests

    return requests.get(
        f"{admin_api.activecampaign.url}/api/3/webhooks",
        headers={"Api-Token": AC_KEY},
        timeout=10,
    ).json()["webhooks"]


def test_activecampaign_webhook_has_no_api_source_and_disconnect_removes_both(admin_api):
    oid = admin_api.user(ADMIN)
    assert admin_api.connect(oid).status_code == 200
    hooks = _ac_webhooks(admin_api)
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook["url"].startswith("http://127.0.0.1:8999/webhooks/activecampaign/")
    assert "api" not in hook["sources"] and set(hook["sources"]) == {"public", "admin", "system"}
    assert {
        "update",
        "unsubscribe",
        "subscribe",
        "contact_tag_added",
        "contact_tag_removed",
    } <= set(hook["events"])
    # Connecting again replaces the webhook (fresh token), it does not add a second one.
    assert admin_api.connect(oid).status_code == 200
    again = _ac_webhooks(admin_api)
    assert len(again) == 1 and again[0]["url"] != hook["url"]

    gone = admin_api.call("DELETE", "/api/v1/admin/connection", oid)
    assert gone.status_code == 200, gone.get_json()
    assert gone.get_json()["connected"] is False
    assert _ac_webhooks(admin_api) == []
    assert _steps(admin_api.dataverse) == []
    assert admin_api.call("GET", "/api/v1/admin/connection", oid).get_json()["connected"] is False


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"api_url": "URL", "api_key": "wrong-key"}, "api_key", "invalid_api_key"),
        ({"api_url": "https://example.com", "api_key": AC_KEY}, "api_url", "invalid_api_url"),
        ({"api_url": "http://127.0.0.1:9", "api_key": AC_KEY}, "api_url", "invalid_api_url"),
        ({"api_url": "URL"}, "api_key", "invalid_request"),
        ({"api_url": 5, "api_key": AC_KEY}, "api_url", "invalid_request"),
        ({"api_url": "URL", "api_key": AC_KEY, "extra": 1}, "extra", "invalid_request"),
    ],
)
def test_bad_pairs_and_malformed_payloads_are_400_naming_the_field(admin_api, payload, field, code):
    oid = admin_api.user(ADMIN)
    payload = {k: (admin_api.activecampaign.url if v == "URL" else v) for k, v in payload.items()}
    response = admin_api.call("POST", "/api/v1/admin/connection", oid, json=payload)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and field in error["fields"]
    with admin_api.runtime.db.session() as session:
        assert session.query(Connection).count() == 0


def test_only_activecampaign_hosts_are_accepted():
    strict = load_settings(
        {"BRIDGE_SECRET_KEY": new_secret_key(), "ENTRA_CLIENT_ID": "x", "ENTRA_CLIENT_SECRET": "y"}
    )
    assert check_api_url("https://acme.api-us1.com/", strict) == "https://acme.api-us1.com"
    assert check_api_url("https://acme.api-us1.com/api/3", strict) == "https://acme.api-us1.com"
    assert check_api_url("https://Acme.activehosted.com", strict) == "https://acme.activehosted.com"
    for bad in (
        "http://acme.api-us1.com",
        "https://acme.api-us1.com.evil.com",
        "https://evil.com/acme.api-us1.com",
        "https://user:pw@acme.api-us1.com",
        "https://acme.api-us1.com:8443",
        "https://127.0.0.1:5000",
        "https://169.254.169.254",
        "not a url",
    ):
        with pytest.raises(ApiError) as err:
            check_api_url(bad, strict)
        assert "api_url" in err.value.fields


@pytest.mark.parametrize(
    ("make_token", "status", "code"),
    [
        (lambda api, oid: "", 401, "missing_token"),
        (lambda api, oid: api.token(oid, expires_in=-600), 401, "token_expired"),
        (lambda api, oid: api.token(oid, aud="someone-else"), 401, "invalid_token"),
        (lambda api, oid: api.token(oid, tid=str(uuid.uuid4())), 403, "unknown_organization"),
    ],
)
def test_bad_tokens_are_refused(admin_api, make_token, status, code):
    oid = admin_api.user(ADMIN)
    assert admin_api.connect(oid).status_code == 200
    for method, path in (
        ("GET", "/api/v1/admin/connection"),
        ("GET", "/api/v1/admin/sync-settings"),
    ):
        response = admin_api.call(method, path, token=make_token(admin_api, oid) or "")
        assert response.status_code == status, (path, response.get_json())
        assert response.get_json()["error"]["code"] == code


def test_a_user_without_the_admin_role_gets_403(admin_api):
    seller = admin_api.user(["Salesperson", "ActiveCampaign User"], "Jane Doe")
    response = admin_api.connect(seller)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "admin_role_required"
    assert admin_api.call("GET", "/api/v1/admin/connection", seller).status_code == 403
