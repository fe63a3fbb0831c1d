"""Settings / Connect: check an ActiveCampaign API URL + key, connect the org, disconnect it.

Which API URLs are accepted (no SSRF: the bridge only ever calls ActiveCampaign):

* ``https://<account>.api-us1.com`` and ``https://<account>.activehosted.com`` (port 443 only,
  no user info; an ``/api/3`` path is dropped), the forms ActiveCampaign shows under
  Settings → Developer;
* ``http(s)://127.0.0.1[:port]`` and ``http(s)://localhost[:port]`` only when
  ``settings.allow_loopback_hosts`` is on (sandbox mode and tests, for the emulator).

Anything else is refused with a message beside the URL field before any request is made.
Connecting proves the key with ``GET /api/3/users/me`` first; then it creates (or reuses) the
connection for the caller's org (org id from the Web API ``WhoAmI``), stores the key encrypted
(only its last 4 characters are ever shown), registers the Dataverse webhook steps and one
ActiveCampaign account webhook (sources public/admin/system, never ``api``, so the bridge's
own writes do not echo back) at ``{public_url}/webhooks/activecampaign/<fresh token>``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from bridge.auth import DynamicsUser, normalize_org_url
from bridge.clients import (
    ActiveCampaignClient,
    ActiveCampaignError,
    DataverseError,
    activecampaign_client,
    activecampaign_limiter,
    dataverse_client_for,
)
from bridge.config import Settings
from bridge.connections import (
    connection_for_org,
    create_connection,
    rotate_activecampaign_webhook_token,
    rotate_dataverse_webhook_key,
    set_activecampaign_credentials,
)
from bridge.errors import ApiError
from bridge.mapping import webhook_columns
from bridge.models import Connection, utcnow
from bridge.registration import register_webhooks, unregister_webhooks
from bridge.runtime import Runtime

log = logging.getLogger(__name__)

_AC_HOST = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\.(api-us1\.com|activehosted\.com)$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
WEBHOOK_NAME = "Dynamics 365 (ActiveCampaign Bridge)"
WEBHOOK_EVENTS = ["update", "unsubscribe", "subscribe", "contact_tag_added", "contact_tag_removed"]
WEBHOOK_SOURCES = ["public", "admin", "system"]  # never "api": the bridge's own writes


def _url_error(message: str) -> ApiError:
    return ApiError(400, "invalid_api_url", message, fields={"api_url": [message]})


def _key_error(message: str) -> ApiError:
    return ApiError(400, "invalid_api_key", message, fields={"api_key": [message]})


def check_api_url(value: str, settings: Settings) -> str:
    """The normalized API URL (``https://acct.api-us1.com``) or a 400 naming ``api_url``."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _url_error("This is not a valid URL.") from None
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise _url_error("Enter only the API URL, e.g. https://youraccount.api-us1.com")
    if path not in ("", "/api/3"):
        raise _url_error("Enter only the API URL, e.g. https://youraccount.api-us1.com")
    if (
        settings.allow_loopback_hosts
        and host in LOOPBACK_HOSTS
        and parts.scheme in ("http", "https")
    ):
        return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    if parts.scheme != "https" or not _AC_HOST.match(host) or port not in (None, 443):
        raise _url_error(
            "This is not an ActiveCampaign API URL. Copy it from ActiveCampaign: Settings › "
            "Developer (it looks like https://youraccount.api-us1.com)."
        )
    return f"https://{host}"


def verify_account(runtime: Runtime, api_url: str, api_key: str) -> dict[str, Any]:
    """``users/me`` with this pair; a 400 naming the field at fault otherwise."""
    client = ActiveCampaignClient(
        api_url,
        api_key,
        limiter=activecampaign_limiter(runtime.redis, api_url, runtime.settings),
        timeout=10,
        max_attempts=2,
        backoff_base=0.2,
    )
    try:
        me = client.me()
    except ActiveCampaignError as err:
        if err.status in (401, 403):
            raise _key_error(
                "ActiveCampaign rejected this API key. Copy the key from Settings › Developer."
            ) from None
        if err.status is None or err.transient:
            raise _url_error(
                "ActiveCampaign could not be reached at this URL; check it and try again."
            ) from None
        raise _url_error(
            f"This URL did not answer like the ActiveCampaign API (HTTP {err.status})."
        ) from None
    if not me.get("id"):
        raise _url_error("This URL did not answer like the ActiveCampaign API.")
    return me


def _account_label(me: dict[str, Any]) -> str:
    name = " ".join(p for p in (me.get("firstName"), me.get("lastName")) if p)
    email = me.get("email") or me.get("username") or ""
    return f"{name} <{email}>" if name and email else (name or email)


def _refuse_other_tenants(runtime: Runtime, user: DynamicsUser) -> None:
    """An org connected under one tenant is never reachable with another tenant's token,
    even through the "not connected yet" path."""
    if user.connection_id is not None:
        return
    with runtime.db.session() as session:
        for connection in session.scalars(select(Connection)):
            if normalize_org_url(connection.dataverse_url) == user.org_url:
                raise ApiError(
                    403, "unknown_organization", "this organization is not connected to the bridge"
                )


def status(runtime: Runtime, user: DynamicsUser) -> dict[str, Any]:
    _refuse_other_tenants(runtime, user)
    body: dict[str, Any] = {"connected": False, "org_url": user.org_url}
    if user.connection_id is None:
        return body
    with runtime.db.session() as session:
        connection = session.get(Connection, user.connection_id)
        if connection is None or not connection.ac_api_key_encrypted:
            return body
        return {
            **body,
            "connected": True,
            "ac_api_url": connection.ac_api_url,
            "ac_account": connection.name or None,
            "ac_api_key_last4": connection.ac_api_key_last4,
            "connected_by": connection.connected_by,
            "connected_at": connection.connected_at,
            "activecampaign_webhook": bool(connection.ac_webhook_token_hash),
        }


def _bridge_webhooks(client: ActiveCampaignClient, public_url: str) -> list[dict]:
    prefix = f"{public_url}/webhooks/activecampaign/"
    return [w for w in client.list_webhooks() if str(w.get("url", "")).startswith(prefix)]


def connect(runtime: Runtime, user: DynamicsUser, api_url: str, api_key: str) -> dict[str, Any]:
    settings = runtime.settings
    _refuse_other_tenants(runtime, user)
    api_url = check_api_url(api_url, settings)
    api_key = api_key.strip()
    if not api_key:
        raise _key_error("Enter the API key.")
    me = verify_account(runtime, api_url, api_key)
    dataverse = dataverse_client_for(runtime, user.org_url, user.tenant_id)
    try:
        org_id = str(dataverse.whoami()["OrganizationId"]).lower()
    except (DataverseError, KeyError) as err:
        log.warning("WhoAmI failed for %s: %s", user.org_url, err)
        raise ApiError(
            502, "dynamics_unavailable", "Dynamics did not answer WhoAmI; try again."
        ) from None
    with runtime.db.session() as session:
        connection = connection_for_org(session, org_id)
        if connection is None:
            connection = create_connection(
                session,
                runtime.secrets,
                dataverse_url=user.org_url,
                dataverse_org_id=org_id,
                tenant_id=user.tenant_id,
            )
        elif connection.tenant_id != user.tenant_id:
            raise ApiError(
                403, "unknown_organization", "this organization belongs to another tenant"
            )
        set_activecampaign_credentials(connection, runtime.secrets, api_url, api_key)
        connection.name = _account_label(me)
        connection.connected_by = user.name
        connection.connected_at = utcnow()
        webhook_key = rotate_dataverse_webhook_key(connection)
        ac_token = rotate_activecampaign_webhook_token(connection)
        session.flush()
        try:
            registered = register_webhooks(
                dataverse,
                webhook_url=f"{settings.public_url}/webhooks/dataverse",
                webhook_key=webhook_key,
                columns_by_entity=webhook_columns(),
            )
        except DataverseError as err:
            log.warning("webhook registration failed for %s: %s", user.org_url, err)
            raise ApiError(
                502,
                "dynamics_unavailable",
                "Dynamics refused the webhook registration; check the bridge's application user.",
            ) from None
        ac = activecampaign_client(runtime, connection)
        try:
            for old in _bridge_webhooks(ac, settings.public_url):
                ac.delete_webhook(old["id"])
            ac.create_webhook(
                WEBHOOK_NAME,
                f"{settings.public_url}/webhooks/activecampaign/{ac_token}",
                WEBHOOK_EVENTS,
                WEBHOOK_SOURCES,
            )
        except ActiveCampaignError as err:
            raise _url_error(f"ActiveCampaign refused the webhook: {err}") from None
        connection_id = connection.id
    result = status(runtime, dataclasses.replace(user, connection_id=connection_id))
    result["dataverse_webhooks"] = len(getattr(registered, "step_ids", {}) or {})
    return result


def disconnect(runtime: Runtime, user: DynamicsUser) -> dict[str, Any]:
    """Remove both webhooks and forget the ActiveCampaign credentials (settings are kept)."""
    if user.connection_id is None:
        raise ApiError(400, "not_connected", "this organization is not connected")
    with runtime.db.session() as session:
        connection = session.get(Connection, user.connection_id)
        if connection is None or not connection.ac_api_key_encrypted:
            raise ApiError(400, "not_connected", "this organization is not connected")
        try:
            ac = activecampaign_client(runtime, connection)
            for hook in _bridge_webhooks(ac, runtime.settings.public_url):
                ac.delete_webhook(hook["id"])
        except ActiveCampaignError as err:
            # The account may be gone or the key revoked: disconnect anyway.
            log.warning("could not remove the ActiveCampaign webhook: %s", err)
        try:
            unregister_webhooks(dataverse_client_for(runtime, user.org_url, user.tenant_id))
        except DataverseError as err:
            log.warning("webhook unregistration failed for %s: %s", user.org_url, err)
            raise ApiError(
                502, "dynamics_unavailable", "Dynamics did not answer; try again."
            ) from None
        connection.ac_api_url = None
        connection.ac_api_key_encrypted = None
        connection.ac_api_key_last4 = None
        connection.ac_webhook_token_hash = None
        connection.dataverse_webhook_key_hash = None
        connection.connected_by = None
        connection.connected_at = None
        connection.name = ""
    return {"connected": False, "org_url": user.org_url}
