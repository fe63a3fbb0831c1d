"""Entra ID stand-in: an RS256 signing key, its JWKS, token minting and validation.

App tokens for the org follow what Entra issues for Dataverse (a v1-style resource): ``aud`` is
the org URL, ``appid``/``azp`` the client id, ``oid`` the app's service principal object id.
Real v1 tokens are issued by ``https://sts.windows.net/{tid}/``; here that host is the emulator,
so v1 ``iss`` is ``{authority_host}/{tid}/`` and v2 ``iss`` is ``{authority_host}/{tid}/v2.0``.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def app_object_id(client_id: str) -> str:
    """Stable service-principal object id for an app (differs from the client id, as in Entra)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"service-principal:{client_id}"))


@dataclass
class Caller:
    """Who made a Web API call: the token claims and the resolved systemuser."""

    claims: dict[str, Any]
    key: str  # service-protection bucket: the token's oid (or sub)
    user_id: str = ""  # systemuserid doing the work (impersonated user if CallerObjectId)
    initiating_user_id: str = ""  # systemuserid of the token's principal
    aad_object_id: str = ""


class Identity:
    """Signing key + token logic for one tenant; the key can be persisted in a state dir."""

    def __init__(self, tenant_id: str, key_path: Path | None = None) -> None:
        self.tenant_id = tenant_id
        self.authority_host = ""
        if key_path is not None and key_path.exists():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if key_path is not None:
                key_path.write_bytes(
                    self._key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        pub = self._key.public_key().public_numbers()
        self.kid = hashlib.sha256(str(pub.n).encode()).hexdigest()[:27]
        self._jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64(pub.n),
            "e": _b64(pub.e),
        }

    def issuer(self, tid: str | None = None, ver: str = "2.0") -> str:
        tid = tid or self.tenant_id
        return (
            f"{self.authority_host}/{tid}/v2.0" if ver == "2.0" else f"{self.authority_host}/{tid}/"
        )

    def jwks(self) -> dict[str, Any]:
        key = dict(self._jwk)
        key["issuer"] = f"{self.authority_host}/{{tenantid}}/v2.0"
        return {"keys": [key]}

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.authority_host}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.authority_host}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims,
            self._key,
            algorithm="RS256",
            headers={"kid": self.kid, "x5t": self.kid, "typ": "JWT"},
        )

    def app_token(self, client_id: str, audience: str, expires_in: int = 3599) -> str:
        now = int(time.time())
        oid = app_object_id(client_id)
        return self.sign(
            {
                "aud": audience,
                "iss": self.issuer(ver="1.0"),
                "iat": now,
                "nbf": now,
                "exp": now + expires_in,
                "aio": uuid.uuid4().hex,
                "appid": client_id,
                "azp": client_id,
                "appidacr": "1",
                "idp": self.issuer(ver="1.0"),
                "idtyp": "app",
                "oid": oid,
                "rh": "0.emulator.",
                "sub": oid,
                "tid": self.tenant_id,
                "uti": uuid.uuid4().hex[:22],
                "ver": "1.0",
            }
        )

    def user_token(
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
        azp: str = "00000000-0000-0000-0000-000000000000",
    ) -> str:
        now = int(time.time())
        tid = tid or self.tenant_id
        claims: dict[str, Any] = {
            "aud": aud,
            "iss": self.issuer(tid, ver),
            "iat": now,
            "nbf": now,
            "exp": now + expires_in,
            "name": name,
            "oid": oid,
            "scp": scp,
            "sub": hashlib.sha256(f"{oid}:{aud}".encode()).hexdigest()[:43],
            "tid": tid,
            "uti": uuid.uuid4().hex[:22],
            "ver": ver,
        }
        if ver == "2.0":
            claims.update(azp=azp, azpacr="0", preferred_username=upn)
        else:
            claims.update(appid=azp, appidacr="0", upn=upn, unique_name=upn)
        if roles:
            claims["roles"] = list(roles)
        return self.sign(claims)

    def verify(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """Signature, expiry and audience; raises ``jwt.InvalidTokenError``."""
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=audiences,
            options={"verify_iss": False},
            leeway=5,
        )
