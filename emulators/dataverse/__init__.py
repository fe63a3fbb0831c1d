"""Dataverse Web API v9.2 + Entra ID emulator served over HTTPS.

Stands in for a Dynamics 365 org in tests and sandbox mode. Faithful to the public docs
(``../shared/facts/dataverse.md``): client-credentials tokens, the Web API with paging, change
tracking, ``$batch`` and service protection limits, and webhook steps that POST
RemoteExecutionContext bodies. See ``DataverseEmulator`` for the Python interface.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from emulators.server import RunningServer, TlsFiles, make_self_signed_cert, serve_in_thread

from .app import create_app
from .errors import ApiError
from .identity import Identity, app_object_id
from .limits import ServiceProtection
from .records import json_value
from .service import Organization, WriteOptions
from .store import Ref, Store
from .webapi import WebApi

DEMO_TENANT_ID = "7d3c9a52-3f1e-4b8a-9c61-0e2a5f4d8b10"
DEMO_ORG_ID = "3a6f0c2e-8d41-4b7a-a5e9-1c2d3e4f5a6b"
DEMO_CLIENT_ID = "5b0e7c1d-2a9f-4e63-8d4b-6c1a2f3e4d5c"
DEMO_CLIENT_SECRET = "sandbox-client-secret"

__all__ = [
    "DataverseEmulator",
    "ApiError",
    "DEMO_TENANT_ID",
    "DEMO_ORG_ID",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
]


class DataverseEmulator:
    """One emulated organization (and its Entra tenant) on one HTTPS port."""

    def __init__(
        self,
        tenant_id: str = DEMO_TENANT_ID,
        org_id: str = DEMO_ORG_ID,
        org_name: str = "unqsandbox",
        apps: dict[str, str] | None = None,
        requests_per_window: int = 6000,
        window_seconds: float = 300,
        max_concurrent: int = 52,
        webhook_timeout: float = 60.0,
        state_dir: str | Path | None = None,
        bridge_client_id: str | None = None,
    ) -> None:
        self.tenant_id = tenant_id.lower()
        self.org_id = org_id.lower()
        self.org_name = org_name
        self.apps = dict(apps if apps is not None else {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
        self.state_dir = (
            Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="dataverse-emulator-"))
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.identity = Identity(self.tenant_id, self.state_dir / "signing-key.pem")
        self.limits = ServiceProtection(requests_per_window, window_seconds, max_concurrent)
        self.store = Store()
        self.url = ""
        self.org = Organization(
            self.store, self.org_id, org_name, lambda: self.url, webhook_timeout
        )
        self.api = WebApi(self.org, lambda: self.api_url)
        self.request_log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._server: RunningServer | None = None
        self._tls: TlsFiles | None = None
        # The bridge's Entra application id: the audience of the user tokens the emulated web
        # client hands to web resources (``/_emulator/webclient/token``); see ``webclient``.
        self.bridge_client_id = bridge_client_id

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, port: int = 0) -> DataverseEmulator:
        cert, key = self.state_dir / "emulator-cert.pem", self.state_dir / "emulator-key.pem"
        self._tls = (
            TlsFiles(cert, key)
            if cert.exists() and key.exists()
            else make_self_signed_cert(self.state_dir)
        )
        self._server = serve_in_thread(create_app(self), port=port, tls=self._tls, quiet=True)
        self.url = self._server.url
        self.identity.authority_host = self.url
        self.org.seed(self.apps)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.org.webhooks.stop()

    def __enter__(self) -> DataverseEmulator:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.url}/api/data/v9.2"

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant_id}"

    @property
    def ca_bundle(self) -> str:
        if self._tls is None:
            raise RuntimeError("start() the emulator first")
        return str(self._tls.cert_path)

    def issuer(self, ver: str = "2.0", tid: str | None = None) -> str:
        """``iss`` of tokens minted here (v1: ``{url}/{tid}/``, v2: ``{url}/{tid}/v2.0``)."""
        return self.identity.issuer(tid, ver)

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/{self.tenant_id}/discovery/v2.0/keys"

    def info(self) -> dict[str, Any]:
        app_id, secret = next(iter(self.apps.items()), ("", ""))
        return {
            "url": self.url,
            "api_url": self.api_url,
            "tenant_id": self.tenant_id,
            "org_id": self.org_id,
            "org_name": self.org_name,
            "client_id": app_id,
            "client_secret": secret,
            "authority": self.authority,
            "ca_bundle": self.ca_bundle,
            "jwks_uri": self.jwks_uri,
        }

    # --- identities --------------------------------------------------------------------------
    def mint_user_token(
        self,
        oid: str,
        aud: str,
        tid: str | None = None,
        name: str = "",
        upn: str = "",
        roles: list[str] | None = None,
        scp: str = "access_as_user",
        expires_in: int = 3600,
        ver: str = "2.0",
    ) -> str:
        return self.identity.user_token(oid, aud, tid, name, upn, roles, scp, expires_in, ver)

    def add_system_user(
        self,
        fullname: str,
        aad_object_id: str,
        domainname: str = "",
        roles: list[str] | None = None,
    ) -> str:
        return self.org.add_system_user(fullname, aad_object_id, domainname, roles)

    def app_user_id(self, client_id: str) -> str:
        """systemuserid of the application user of a configured app."""
        user = self.org.user_by_aad(app_object_id(client_id))
        if user is None:
            raise KeyError(client_id)
        return user["systemuserid"]

    # --- data --------------------------------------------------------------------------------
    def create_record(
        self,
        entity_logical_name: str,
        attributes: dict[str, Any],
        *,
        tag: str | None = None,
        user_id: str | None = None,
    ) -> str:
        """Create like a Web API POST (``attributes`` in Web API JSON form, binds allowed)."""
        return self.org.create(
            entity_logical_name, attributes, self.org.actor(user_id), WriteOptions(tag=tag)
        )

    def update_record(
        self,
        entity: str,
        id: str,
        attributes: dict[str, Any],
        *,
        tag: str | None = None,
        user_id: str | None = None,
    ) -> None:
        if self.store.get(entity, id) is None:
            from .errors import not_found

            raise not_found(entity, id)
        self.org.update(entity, id, attributes, self.org.actor(user_id), WriteOptions(tag=tag))

    def delete_record(
        self, entity: str, id: str, *, tag: str | None = None, user_id: str | None = None
    ) -> None:
        self.org.delete(entity, id, self.org.actor(user_id), WriteOptions(tag=tag))

    def get_record(self, entity: str, id: str) -> dict[str, Any] | None:
        """The row with plain JSON values (lookups as ``_x_value`` ids, ISO datetimes)."""
        row = self.store.get(entity, id)
        if row is None:
            return None
        table = self.store.tables[entity]
        return {
            table.columns[k].web_name if k in table.columns else k: json_value(v)
            for k, v in row.items()
        }

    def add_alternate_key(self, entity: str, columns: list[str] | tuple[str, ...]) -> None:
        """Declare an alternate key so ``PATCH leads(emailaddress1='x')`` upserts work."""
        self.store.alternate_keys[entity].append(tuple(columns))

    def expire_delta_tokens(self) -> None:
        """Make every delta token issued so far invalid (as after the 90-day retention)."""
        with self.store.lock:
            self.store.min_delta_version = self.store.next_version()

    # --- environment variables and the web client --------------------------------------------
    def set_environment_variable(self, schema_name: str, value: str | None) -> None:
        """Give an environment variable this org's current value (creating its definition as a
        solution import would); ``None`` removes the current value."""
        definitions = self.store.find("environmentvariabledefinition", schemaname=schema_name)
        if definitions:
            definition_id = definitions[0]["environmentvariabledefinitionid"]
        else:
            definition_id = self.create_record(
                "environmentvariabledefinition",
                {"schemaname": schema_name, "displayname": schema_name, "defaultvalue": ""},
            )
        for row in self.store.find(
            "environmentvariablevalue",
            environmentvariabledefinitionid=Ref("environmentvariabledefinition", definition_id),
        ):
            self.delete_record("environmentvariablevalue", row["environmentvariablevalueid"])
        if value is not None:
            self.create_record(
                "environmentvariablevalue",
                {
                    "schemaname": schema_name,
                    "value": value,
                    "environmentvariabledefinitionid@odata.bind": (
                        f"/environmentvariabledefinitions({definition_id})"
                    ),
                },
            )

    def webclient_url(self, webresource: str, data: str | None = None) -> str:
        """The address of a web resource page in the emulated web client (app shell)."""
        from urllib.parse import urlencode

        query = {"pagetype": "webresource", "webresourceName": webresource}
        if data is not None:
            query["data"] = data
        return f"{self.url}/main.aspx?{urlencode(query)}"

    def signin_url(self, oid: str, next_url: str | None = None) -> str:
        """A link that signs a browser in as the user with that Entra object id."""
        from urllib.parse import urlencode, urlsplit

        query = {"oid": oid}
        if next_url:
            parts = urlsplit(next_url)
            query["next"] = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{self.url}/_emulator/signin?{urlencode(query)}"

    # --- webhooks and limits -----------------------------------------------------------------
    @property
    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return self.org.webhooks.deliveries

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.org.webhooks.wait_for(count, timeout)

    def set_limits(
        self,
        requests_per_window: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.limits.configure(requests_per_window, window_seconds, max_concurrent)

    def _log(self, method: str, path: str, status: int, caller: str) -> None:
        with self._log_lock:
            self.request_log.append(
                {
                    "ts": time.time(),
                    "method": method,
                    "path": path,
                    "status": status,
                    "caller": caller,
                }
            )
