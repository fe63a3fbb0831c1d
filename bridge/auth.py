"""Who is calling from Dynamics: Entra ID bearer tokens mapped to Dynamics users and roles.

The web resources (admin pages, sales dialogs, timeline) call the bridge with
an Entra ID access token for the bridge's own app registration. Each request is
checked end to end:

1. the token: signature (the tenant's JWKS), issuer, audience (this bridge's
   client id), expiry; ``tid`` and ``oid`` must be present;
2. the organization: ``X-Dynamics-Org-Url`` names the Dynamics org the page runs
   in; it must belong to the token's tenant (a connection row, or — only to
   connect a new org — a Dynamics host);
3. the person: ``oid`` must be an enabled ``systemuser`` of that org, and their
   security roles decide what they may do (looked up through the Web API as the
   bridge's app user, cached briefly in Redis).

So one organization's users can never read or change another's data: the
connection is chosen by the tenant in a signed token, not by anything the
browser may freely set.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from flask import g, request
from sqlalchemy import select

from bridge.clients import DataverseError, dataverse_client_for
from bridge.config import DEFAULT_AUTHORITY_HOST, Settings
from bridge.errors import ApiError
from bridge.models import Connection
from bridge.runtime import Runtime

log = logging.getLogger(__name__)

ROLE_SYSTEM_ADMINISTRATOR = "System Administrator"
ROLE_AC_ADMIN = "ActiveCampaign Admin"
ROLE_AC_USER = "ActiveCampaign User"
ADMIN_ROLES = frozenset({ROLE_SYSTEM_ADMINISTRATOR, ROLE_AC_ADMIN})
SALES_ROLES = frozenset({ROLE_AC_USER})

ORG_HEADER = "X-Dynamics-Org-Url"
ROLE_CACHE_SECONDS = 60
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Hosts of Dynamics 365 organizations (crm, crm2 … crm21 and sovereign clouds).
_DYNAMICS_HOST = re.compile(
    r"^[a-z0-9-]+\.crm[0-9]*\.(dynamics\.com|dynamics\.cn|microsoftdynamics\.us|appsplatform\.us)$"
)


@dataclass(frozen=True)
class DynamicsUser:
    """An authenticated person working in one Dynamics organization."""

    tenant_id: str
    object_id: str
    org_url: str
    connection_id: int | None  # None only while an org is being connected
    systemuser_id: str
    name: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    @property
    def is_sales_user(self) -> bool:
        return bool(self.roles & SALES_ROLES)


def normalize_org_url(value: str) -> str:
    """``https://Org.crm.dynamics.com/main.aspx`` → ``https://org.crm.dynamics.com``."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ApiError(400, "invalid_org_url", f"{ORG_HEADER} must be the organization's URL")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def is_dynamics_host(org_url: str, settings: Settings) -> bool:
    """True for a real Dynamics org URL (and loopback emulators in sandbox/tests)."""
    parts = urlsplit(org_url)
    host = parts.hostname or ""
    if settings.allow_loopback_hosts and host in ("127.0.0.1", "localhost"):
        return True
    return parts.scheme == "https" and bool(_DYNAMICS_HOST.match(host))


class TokenVerifier:
    """Validates Entra ID access tokens against each tenant's published keys."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def _jwks_client(self, tenant_id: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._clients.get(tenant_id)
            if client is None:
                context = ssl.create_default_context(
                    cafile=self.settings.ca_bundle if self.settings.ca_bundle else None
                )
                client = jwt.PyJWKClient(
                    f"{self.settings.entra_authority_host}/{tenant_id}/discovery/v2.0/keys",
                    cache_jwk_set=True,
                    lifespan=3600,
                    timeout=10,
                    ssl_context=context,
                )
                self._clients[tenant_id] = client
            return client

    def issuers(self, tenant_id: str) -> list[str]:
        host = self.settings.entra_authority_host
        v1 = (
            f"https://sts.windows.net/{tenant_id}/"
            if host == DEFAULT_AUTHORITY_HOST
            else f"{host}/{tenant_id}/"
        )
        return [f"{host}/{tenant_id}/v2.0", v1]

    def audiences(self) -> list[str]:
        client_id = self.settings.entra_client_id
        return [client_id, f"api://{client_id}"]

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``ApiError(401)`` saying what is wrong."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise ApiError(401, "invalid_token", "the bearer token is not a JWT") from None
        tenant_id = str(unverified.get("tid", "")).lower()
        if not _GUID.match(tenant_id):
            raise ApiError(401, "invalid_token", "the token has no tenant (tid)")
        try:
            key = self._jwks_client(tenant_id).get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audiences(),
                issuer=self.issuers(tenant_id),
                leeway=60,
                options={"require": ["exp", "iss", "aud", "tid", "oid"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "the bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise ApiError(401, "invalid_token", "the token is not for this bridge") from None
        except jwt.InvalidIssuerError:
            raise ApiError(401, "invalid_token", "the token's issuer is not Entra ID") from None
        except jwt.PyJWKClientError:
            raise ApiError(401, "invalid_token", "the token's signing key is unknown") from None
        except jwt.InvalidTokenError as err:
            raise ApiError(401, "invalid_token", f"the bearer token is invalid: {err}") from None
        if str(claims.get("tid", "")).lower() != tenant_id:
            raise ApiError(401, "invalid_token", "the token's tenant does not match its issuer")
        return claims


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "missing_token",
            "sign in: send an Entra ID access token as 'Authorization: Bearer …'",
            headers={"WWW-Authenticate": 'Bearer realm="activecampaign-bridge"'},
        )
    return token.strip()


def _resolve_org(
    runtime: Runtime, tenant_id: str, allow_unconnected: bool
) -> tuple[str, Connection | None]:
    """The org the caller works in, and its connection (which must share the token's tenant)."""
    header = request.headers.get(ORG_HEADER)
    with runtime.db.session() as session:
        candidates = session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_id)
        ).all()
    if header:
        org_url = normalize_org_url(header)
        for connection in candidates:
            if normalize_org_url(connection.dataverse_url) == org_url:
                return org_url, connection
        if allow_unconnected and is_dynamics_host(org_url, runtime.settings):
            return org_url, None
        raise ApiError(
            403, "unknown_organization", "this organization is not connected to the bridge"
        )
    if len(candidates) == 1:
        return normalize_org_url(candidates[0].dataverse_url), candidates[0]
    raise ApiError(400, "missing_org", f"send the organization's URL in {ORG_HEADER}")


def _lookup_user(
    runtime: Runtime, org_url: str, tenant_id: str, object_id: str
) -> tuple[str, str, frozenset[str]]:
    """(systemuserid, full name, role names) of ``object_id`` in the org, cached briefly."""
    cache_key = f"auth:user:{org_url}:{object_id}"
    cached = runtime.redis.get(cache_key)
    if cached:
        data = json.loads(cached)
        return data["id"], data["name"], frozenset(data["roles"])
    client = dataverse_client_for(runtime, org_url, tenant_id)
    try:
        users = list(
            client.query(
                "systemusers",
                select=["systemuserid", "fullname", "isdisabled"],
                filter=f"azureactivedirectoryobjectid eq {object_id}",
                page_size=2,
            )
        )
        if not users or users[0].get("isdisabled"):
            raise ApiError(
                403, "not_a_dynamics_user", "you are not an enabled user of this organization"
            )
        user = users[0]
        roles = client.request(
            "GET",
            f"systemusers({user['systemuserid']})/systemuserroles_association",
            params={"$select": "name,roleid"},
        ).json()["value"]
    except DataverseError as err:
        log.warning("role lookup failed for org %s: %s", org_url, err)
        raise ApiError(
            503,
            "dynamics_unavailable",
            "Dynamics did not answer the role check; try again",
            headers={"Retry-After": "5"},
        ) from None
    role_names = sorted({role["name"] for role in roles})
    runtime.redis.set(
        cache_key,
        json.dumps(
            {"id": user["systemuserid"], "name": user.get("fullname") or "", "roles": role_names}
        ),
        ex=ROLE_CACHE_SECONDS,
    )
    return user["systemuserid"], user.get("fullname") or "", frozenset(role_names)


_verifiers: dict[int, TokenVerifier] = {}


def _verifier(runtime: Runtime) -> TokenVerifier:
    verifier = _verifiers.get(id(runtime.settings))
    if verifier is None:
        verifier = _verifiers[id(runtime.settings)] = TokenVerifier(runtime.settings)
    return verifier


def authenticate(runtime: Runtime, *, allow_unconnected: bool = False) -> DynamicsUser:
    """The caller of the current request, fully checked (see the module docstring)."""
    started = time.monotonic()
    claims = _verifier(runtime).verify(_bearer_token())
    tenant_id = str(claims["tid"]).lower()
    object_id = str(claims["oid"]).lower()
    org_url, connection = _resolve_org(runtime, tenant_id, allow_unconnected)
    if connection is not None:
        tenant_id = connection.tenant_id
    systemuser_id, name, roles = _lookup_user(runtime, org_url, tenant_id, object_id)
    log.debug(
        "authenticated %s in %s in %.1f ms",
        systemuser_id,
        org_url,
        (time.monotonic() - started) * 1000,
    )
    return DynamicsUser(
        tenant_id=tenant_id,
        object_id=object_id,
        org_url=org_url,
        connection_id=connection.id if connection is not None else None,
        systemuser_id=systemuser_id,
        name=name,
        roles=roles,
    )


def requires_role(kind: str, *, allow_unconnected: bool = False) -> Callable:
    """View decorator: ``kind`` is ``"admin"``, ``"sales"`` or ``"any"`` (signed in, no role);
    the user lands in ``g.user``.

    A person without the role gets 403 with a message the page can show as is.
    """
    if kind not in ("admin", "sales", "any"):
        raise ValueError(kind)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            from bridge.web import current_runtime

            user = authenticate(current_runtime(), allow_unconnected=allow_unconnected)
            if kind == "admin" and not user.is_admin:
                raise ApiError(
                    403,
                    "admin_role_required",
                    "only ActiveCampaign Admins and System Administrators manage the integration",
                )
            if kind == "sales" and not user.is_sales_user:
                raise ApiError(
                    403,
                    "user_role_required",
                    "you need the ActiveCampaign User security role; ask your administrator",
                )
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorator


def forget_user(runtime: Runtime, org_url: str, object_id: str) -> None:
    """Drop a cached role lookup (after User Management changes someone's roles)."""
    runtime.redis.delete(f"auth:user:{normalize_org_url(org_url)}:{object_id.lower()}")
