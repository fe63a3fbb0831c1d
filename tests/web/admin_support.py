"""Shared set-up of the admin API tests: emulators, the app, and signed-in callers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.app import create_app
from bridge.auth import ORG_HEADER
from bridge.config import load_settings
from bridge.crypto import new_secret_key
from bridge.runtime import Runtime, set_runtime

CLIENT_ID = "0b1e7c55-1111-4222-8333-444455556666"
SECRET = "bridge-secret"
AC_KEY = "admin-test-ac-key-1234"


@dataclass
class AdminApi:
    app: Any
    dataverse: Any
    activecampaign: Any
    runtime: Runtime

    def user(self, roles: list[str], name: str = "Sam Admin") -> str:
        oid = str(uuid.uuid4())
        self.dataverse.add_system_user(name, oid, roles=roles)
        return oid

    def token(self, oid: str, **kw: Any) -> str:
        kw.setdefault("aud", CLIENT_ID)
        return self.dataverse.mint_user_token(oid, **kw)

    def call(
        self, method: str, path: str, oid: str | None = None, json: Any = None, token=None, **kw
    ):
        headers = {ORG_HEADER: self.dataverse.url}
        if token is None and oid is not None:
            token = self.token(oid)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.app.test_client().open(path, method=method, headers=headers, json=json, **kw)

    def connect(self, oid: str, key: str = AC_KEY):
        return self.call(
            "POST",
            "/api/v1/admin/connection",
            oid,
            json={"api_url": self.activecampaign.url, "api_key": key},
        )


@pytest.fixture
def admin_api(sqlite_database_url, redis_url):
    from emulators.activecampaign import ActiveCampaignEmulator
    from emulators.dataverse import DataverseEmulator

    dataverse = DataverseEmulator(apps={CLIENT_ID: SECRET}).start()
    activecampaign = ActiveCampaignEmulator(api_key=AC_KEY).start()
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
            "BRIDGE_PUBLIC_URL": "http://127.0.0.1:8999",
        }
    )
    app = create_app(settings)
    try:
        yield AdminApi(app, dataverse, activecampaign, Runtime(settings))
    finally:
        set_runtime(None)
        activecampaign.stop()
        dataverse.stop()
