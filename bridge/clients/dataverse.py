"""The one Dataverse Web API client every part of the bridge uses.

A thin ``requests`` + ``msal`` client rather than Microsoft's SDK: the SDK pulls
in pandas, has no change tracking, and does not retry 429. Tokens come from the
client-credentials flow; one msal application per (authority, client) is kept
per process so its token cache is reused across jobs.

Writes can carry ``?tag=`` which Dataverse hands to webhook steps as the ``tag``
shared variable: the bridge marks its own writes that way so the webhook handler
can drop the echo.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlparse

import msal
import requests

from bridge.clients.activecampaign import retry_after_seconds

log = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000
FORMATTED_VALUES = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'


class DataverseError(Exception):
    """Dataverse refused or failed a request; ``code`` is Dataverse's error code (may be '')."""

    def __init__(
        self, status: int | None, code: str, message: str, *, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient

    def __reduce__(self):
        return (_rebuild, (type(self), self.status, self.code, self.message, self.transient))


class DataverseNotFound(DataverseError):
    """404: the row (or table) does not exist."""


class DataverseAuthError(DataverseError):
    """No token could be obtained: wrong client id/secret, tenant, or the app is not consented."""


def _rebuild(cls, status, code, message, transient):
    return cls(status, code, message, transient=transient)


def _error_from(response: requests.Response) -> DataverseError:
    code, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or "")
    if not message:
        message = f"HTTP {response.status_code} {response.reason or ''}".strip()
    status = response.status_code
    cls = DataverseNotFound if status == 404 else DataverseError
    return cls(status, code, message, transient=status >= 500 or status == 429)


class VerifyingSession(requests.Session):
    """A session whose ``verify`` wins over ``REQUESTS_CA_BUNDLE``.

    Plain ``requests`` lets that environment variable override ``Session.verify``
    (a long-standing ``requests`` behaviour), silently ignoring the configured CA bundle.
    """

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def make_session(verify: str | bool = True) -> requests.Session:
    session = VerifyingSession()
    session.verify = verify
    return session


_msal_apps: dict[tuple[str, str, str], msal.ConfidentialClientApplication] = {}
_msal_lock = threading.Lock()


def _msal_app(
    authority: str, client_id: str, client_secret: str, verify: str | bool
) -> msal.ConfidentialClientApplication:
    """One msal app per (authority, client) per process, so its token cache is shared."""
    secret_id = hashlib.sha256(client_secret.encode()).hexdigest()[:16]
    key = (authority, client_id, secret_id)
    with _msal_lock:
        app = _msal_apps.get(key)
        if app is None:
            http = make_session(verify)
            # msal reads the authority's OpenID configuration here, over the network.
            try:
                app = msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=client_secret,
                    authority=authority,
                    instance_discovery=False,
                    http_client=http,
                )
            except requests.RequestException as exc:
                raise DataverseAuthError(
                    None, "", f"could not reach the sign-in service ({type(exc).__name__})",
                    transient=True,
                ) from None
            except ValueError:
                raise DataverseAuthError(
                    None, "", f"the sign-in authority {authority} is not valid", transient=False
                ) from None
            _msal_apps[key] = app
        return app


class TokenCache(Protocol):
    """Somewhere to keep access tokens between processes (RQ forks a process per job)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, token: str, ttl_seconds: int) -> None: ...


class RedisTokenCache:
    """Access tokens in Redis, encrypted with the bridge's key, until shortly before expiry.

    Without it every forked job would rediscover the authority and ask Entra ID
    for a fresh token: two extra round trips per record and needless load on Entra.
    """

    def __init__(self, redis, box) -> None:
        self.redis, self.box = redis, box

    def get(self, key: str) -> str | None:
        stored = self.redis.get(f"dv:token:{key}")
        if not stored:
            return None
        try:
            return self.box.decrypt(stored.decode())
        except ValueError:  # the secret key was rotated: fetch a new token
            return None

    def put(self, key: str, token: str, ttl_seconds: int) -> None:
        self.redis.set(f"dv:token:{key}", self.box.encrypt(token), ex=max(60, ttl_seconds))


_GUID_IN_PARENS = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


class DataverseClient:
    """Dataverse Web API v9.2 for one organization, as the bridge's application user."""

    def __init__(
        self,
        org_url: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority_host: str,
        verify: str | bool = True,
        timeout: float = 30,
        max_attempts: int = 5,
        session: requests.Session | None = None,
        backoff_base: float = 0.5,
        token_cache: TokenCache | None = None,
    ) -> None:
        if not client_id or not client_secret:
            raise DataverseAuthError(
                None, "", "ENTRA_CLIENT_ID and ENTRA_CLIENT_SECRET are not set", transient=False
            )
        self.org_url = org_url.rstrip("/")
        self.base = self.org_url + API_PATH
        self.tenant_id = tenant_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.scopes = [f"{self.org_url}/.default"]
        self._credentials = (client_id, client_secret)
        self._app: msal.ConfidentialClientApplication | None = None
        self.token_cache = token_cache
        secret_id = hashlib.sha256(client_secret.encode()).hexdigest()[:16]
        self._token_key = hashlib.sha256(
            f"{self.authority}|{client_id}|{secret_id}|{self.scopes[0]}".encode()
        ).hexdigest()
        self.session = session or make_session(verify)
        self.verify = verify
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base

    def __repr__(self) -> str:
        return f"<DataverseClient {self.org_url}>"

    # --- transport ----------------------------------------------------------

    def token(self) -> str:
        """A bearer token for this org: from the shared cache, else from Entra ID via msal."""
        if self.token_cache is not None:
            cached = self.token_cache.get(self._token_key)
            if cached:
                return cached
        if self._app is None:
            self._app = _msal_app(self.authority, *self._credentials, self.verify)
        try:
            result = self._app.acquire_token_for_client(scopes=self.scopes)
        except (requests.RequestException, ValueError) as exc:
            raise DataverseAuthError(
                None, "", f"could not reach the sign-in service ({type(exc).__name__})",
                transient=True,
            ) from None
        if "access_token" not in result:
            description = str(result.get("error_description") or result.get("error") or "")
            first_line = description.splitlines()[0] if description else "no token returned"
            raise DataverseAuthError(
                None, str(result.get("error") or ""), f"sign-in failed: {first_line}",
                transient=False,
            )
        if self.token_cache is not None:
            ttl = int(result.get("expires_in") or 3600) - 300
            self.token_cache.put(self._token_key, result["access_token"], ttl)
        return result["access_token"]

    def _url(self, path: str) -> str:
        if path.startswith("https://") or path.startswith("http://"):
            return path
        return self.base + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One Web API call; 429 waits ``Retry-After``, 5xx and network errors back off."""
        url = self._url(path)
        attempt = 0
        throttled = 0
        last: DataverseError | None = None
        while attempt < self.max_attempts:
            attempt += 1
            all_headers = {
                "Authorization": f"Bearer {self.token()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            }
            if json is not None:
                all_headers["Content-Type"] = "application/json; charset=utf-8"
            all_headers.update(headers or {})
            try:
                response = self.session.request(
                    method, url, params=params, json=json, headers=all_headers,
                    timeout=self.timeout, verify=self.verify,
                )
            except requests.RequestException as exc:
                last = DataverseError(
                    None, "", f"could not reach Dataverse ({type(exc).__name__})", transient=True
                )
                if attempt < self.max_attempts:
                    time.sleep(self._backoff(attempt))
                continue
            if response.status_code == 429:
                wait = retry_after_seconds(response)
                throttled += 1
                log.info("%s %s: 429 from Dataverse, waiting %.1fs", method, path, wait)
                last = _error_from(response)
                if throttled <= self.max_attempts * 4:
                    attempt -= 1  # throttling is not a failed attempt
                time.sleep(wait)
                continue
            if response.status_code >= 500:
                last = _error_from(response)
                if attempt < self.max_attempts:
                    time.sleep(self._backoff(attempt))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        assert last is not None
        raise type(last)(
            last.status,
            last.code,
            f"Dataverse unavailable after {self.max_attempts} attempts: {last.message}",
            transient=True,
        )

    def _backoff(self, attempt: int) -> float:
        delay = min(8.0, self.backoff_base * 2 ** (attempt - 1))
        return delay + random.uniform(0, delay / 2)

    @staticmethod
    def _key(record_id: str) -> str:
        return str(record_id).strip("{}").lower()

    @staticmethod
    def _with_tag(path: str, tag: str | None) -> str:
        return f"{path}?tag={quote(tag, safe=':')}" if tag else path

    # --- rows ---------------------------------------------------------------

    def get(
        self,
        entity_set: str,
        record_id: str,
        select: list[str] | None = None,
        annotations: bool = False,
    ) -> dict:
        """One row; ``annotations`` adds formatted values (lookup names, option labels)."""
        params = {"$select": ",".join(select)} if select else None
        headers = {"Prefer": FORMATTED_VALUES} if annotations else None
        return self.request(
            "GET", f"{entity_set}({self._key(record_id)})", params=params, headers=headers
        ).json()

    def create(self, entity_set: str, body: dict, tag: str | None = None) -> str:
        """Create a row; its id comes from the ``OData-EntityId`` header."""
        response = self.request("POST", self._with_tag(entity_set, tag), json=body)
        entity_id = response.headers.get("OData-EntityId") or response.headers.get("Location", "")
        match = _GUID_IN_PARENS.search(entity_id)
        if match:
            return match.group(1).lower()
        if response.content:
            data = response.json()
            for key, value in data.items():
                if key.endswith("id") and isinstance(value, str) and len(value) == 36:
                    return value.lower()
        raise DataverseError(response.status_code, "", "create returned no OData-EntityId")

    def update(self, entity_set: str, record_id: str, body: dict, tag: str | None = None) -> None:
        """PATCH with ``If-Match: *`` so a deleted row gives 404 instead of being re-created."""
        path = self._with_tag(f"{entity_set}({self._key(record_id)})", tag)
        self.request("PATCH", path, json=body, headers={"If-Match": "*"})

    def delete(self, entity_set: str, record_id: str, tag: str | None = None) -> None:
        path = self._with_tag(f"{entity_set}({self._key(record_id)})", tag)
        self.request("DELETE", path)

    def query(
        self,
        entity_set: str,
        select: list[str] | None = None,
        filter: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        orderby: str | None = None,
        top: int | None = None,
    ) -> Iterator[dict]:
        """Every matching row, following ``@odata.nextLink`` (never ``$skip``)."""
        for page in self.query_pages(entity_set, select, filter, page_size, orderby, top):
            yield from page

    def query_pages(
        self,
        entity_set: str,
        select: list[str] | None = None,
        filter: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        orderby: str | None = None,
        top: int | None = None,
    ) -> Iterator[list[dict]]:
        """The rows a page at a time (the initial sync checkpoints between pages)."""
        next_link: str | None = None
        while True:
            rows, next_link = self.query_page(
                entity_set, select, filter, page_size, orderby, top, next_link=next_link
            )
            yield rows
            if not next_link:
                return

    def query_page(
        self,
        entity_set: str,
        select: list[str] | None = None,
        filter: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        orderby: str | None = None,
        top: int | None = None,
        *,
        next_link: str | None = None,
        annotations: bool = False,
    ) -> tuple[list[dict], str | None]:
        """One page and the ``@odata.nextLink`` of the next (None on the last page).

        Pass a saved ``next_link`` to resume a query where it stopped: the link
        carries the whole query and its paging cookie, so the other arguments
        are ignored then (the page size must stay the same).
        """
        params: dict[str, Any] | None = {}
        if next_link:
            params = None
        else:
            if select:
                params["$select"] = ",".join(select)
            if filter:
                params["$filter"] = filter
            if orderby:
                params["$orderby"] = orderby
            if top:
                params["$top"] = str(top)
        prefer = f"odata.maxpagesize={min(page_size, MAX_PAGE_SIZE)}"
        if annotations:
            prefer += "," + FORMATTED_VALUES
        body = self.request(
            "GET", next_link or entity_set, params=params, headers={"Prefer": prefer}
        ).json()
        return body.get("value") or [], body.get("@odata.nextLink")

    def changes(
        self,
        entity_set: str,
        select: list[str],
        delta_token: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[list[dict], str | None]:
        """Rows changed since ``delta_token`` (all rows without one), and the next token.

        Deleted rows come back as ``{"id": ..., "reason": "deleted"}``. The token
        is only on the last page's ``@odata.deltaLink``.
        """
        params: dict[str, Any] | None = {"$select": ",".join(select)}
        if delta_token:
            params["$deltatoken"] = delta_token
        headers = {
            "Prefer": f"odata.track-changes,odata.maxpagesize={min(page_size, MAX_PAGE_SIZE)}"
        }
        rows: list[dict] = []
        new_token: str | None = None
        url: str | None = entity_set
        while url:
            body = self.request("GET", url, params=params, headers=headers).json()
            rows.extend(body.get("value") or [])
            params = None
            url = body.get("@odata.nextLink")
            delta_link = body.get("@odata.deltaLink")
            if delta_link:
                tokens = parse_qs(urlparse(delta_link).query).get("$deltatoken")
                new_token = tokens[0] if tokens else None
        return rows, new_token

    def whoami(self) -> dict:
        """``WhoAmI``: cheap proof that the token works for this org (UserId, OrganizationId)."""
        return self.request("GET", "WhoAmI").json()
