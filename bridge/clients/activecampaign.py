"""The one ActiveCampaign API client every part of the bridge uses.

Why one client: the 5-requests-a-second limit is per ActiveCampaign *account*,
so every request from every process must pass the same shared limiter, and a
429 must pause all of them. Retrying lives here too, so callers only ever see
``ActiveCampaignError`` with a message a person can read and a ``transient``
flag that says whether trying again later can help.

The API key travels only in the ``Api-Token`` header (and, for the v1 API, in
the form body); it is never logged and never put in an exception.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import random
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis as redis_lib
import requests

from bridge.ratelimit import RedisRateLimiter

log = logging.getLogger(__name__)

PAGE_LIMIT = 100  # ActiveCampaign's maximum page size


class ActiveCampaignError(Exception):
    """ActiveCampaign refused or failed a request.

    ``transient`` is True when the same request may succeed later (5xx, network,
    rate limits after every attempt); False when it never will as sent (4xx).
    """

    def __init__(self, status: int | None, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.transient = transient

    def __reduce__(self):  # keep the keyword-only flag through pickling (RQ stores exceptions)
        return (_rebuild_error, (self.status, self.message, self.transient))


def _rebuild_error(status: int | None, message: str, transient: bool) -> ActiveCampaignError:
    return ActiveCampaignError(status, message, transient=transient)


def error_message(response: requests.Response) -> str:
    """A readable message from any of ActiveCampaign's documented error shapes."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, str):
            parts.append(errors)
        elif isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict):
                    title = str(item.get("title") or "").strip()
                    detail = str(item.get("detail") or "").strip()
                    text = f"{title}: {detail}" if title and detail and detail != title else title
                    parts.append(text or detail)
                elif item:
                    parts.append(str(item))
        elif isinstance(errors, dict):
            parts.extend(f"{k}: {v}" for k, v in errors.items())
        if not parts and body.get("message"):
            parts.append(str(body["message"]))
        reasons = body.get("failureReasons")
        if isinstance(reasons, list):
            for reason in reasons:
                if isinstance(reason, dict):
                    where = reason.get("contact")
                    text = str(reason.get("failureReason") or "")
                    parts.append(f"contact {where}: {text}" if where is not None else text)
                elif reason:
                    parts.append(str(reason))
        if not parts and body.get("result_message"):
            parts.append(str(body["result_message"]))
    parts = [p for p in parts if p]
    if parts:
        return "; ".join(parts)
    if response.status_code == 403:
        return "Forbidden"
    return f"HTTP {response.status_code} {response.reason or ''}".strip()


def retry_after_seconds(response: requests.Response, default: float = 1.0) -> float:
    """``Retry-After`` as seconds (number or HTTP date), clamped to something sane."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return default
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), 300.0)


class ActiveCampaignClient:
    """ActiveCampaign v3 (and the one v1 call the bridge needs) with limits and retries."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        limiter: RedisRateLimiter | None,
        session: requests.Session | None = None,
        timeout: float = 30,
        max_attempts: int = 5,
        redis: redis_lib.Redis | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.base = self.api_url + "/api/3/"
        self._api_key = api_key
        self.limiter = limiter
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.redis = redis if redis is not None else (limiter.redis if limiter else None)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        account = hashlib.sha256(self.api_url.lower().encode()).hexdigest()
        self._tag_cache_key = f"ac:tags:{account}"
        self._tag_cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<ActiveCampaignClient {self.api_url}>"

    # --- transport ----------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return delay + random.uniform(0, delay / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, Any] | None = None,
        absolute_url: str | None = None,
    ) -> requests.Response:
        """Send one request through the limiter, retrying what can be retried.

        Every attempt, retries included, takes a slot from the shared limiter:
        ActiveCampaign counts them all.
        """
        url = absolute_url or self.base + path.lstrip("/")
        label = f"{method} {path}"
        headers = {"Api-Token": self._api_key, "Accept": "application/json"}
        last_error = "no attempt made"
        last_status: int | None = None
        attempt = 0
        rate_limited = 0
        while attempt < self.max_attempts:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                # The exception text can hold the URL: keep only the type.
                last_status = None
                last_error = f"could not reach ActiveCampaign ({type(exc).__name__})"
                log.warning("%s: %s (attempt %d)", label, last_error, attempt)
                if attempt < self.max_attempts:
                    time.sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status == 429:
                wait = retry_after_seconds(response)
                rate_limited += 1
                log.info("%s: 429 from ActiveCampaign, pausing %.1fs", label, wait)
                if self.limiter is not None:
                    self.limiter.pause(wait)
                else:
                    time.sleep(wait)
                # A 429 is not the request failing: retry without using up an attempt,
                # but give up eventually so a permanently throttled account cannot hang a worker.
                if rate_limited <= self.max_attempts * 4:
                    attempt -= 1
                last_status, last_error = 429, "ActiveCampaign rate limit kept being exceeded"
                continue
            if status >= 500:
                last_status, last_error = status, error_message(response)
                log.warning("%s: HTTP %d (attempt %d)", label, status, attempt)
                if attempt < self.max_attempts:
                    time.sleep(self._backoff(attempt))
                continue
            if status >= 400:
                raise ActiveCampaignError(status, error_message(response), transient=False)
            return response
        raise ActiveCampaignError(
            last_status,
            f"ActiveCampaign unavailable after {self.max_attempts} attempts: {last_error}",
            transient=True,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise ActiveCampaignError(
                response.status_code, f"{method} {path}: response is not JSON", transient=True
            ) from None
        return body if isinstance(body, dict) else {"data": body}

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict:
        return self._json("GET", path, params=params)

    def post(self, path: str, body: Any) -> dict:
        return self._json("POST", path, json=body)

    def put(self, path: str, body: Any) -> dict:
        return self._json("PUT", path, json=body)

    def delete(self, path: str) -> dict:
        return self._json("DELETE", path)

    def paginate(
        self, path: str, key: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict]:
        """Every item of a list endpoint, 100 a page (``meta.total`` comes as a string)."""
        offset = 0
        while True:
            page_params = dict(params or {}, limit=PAGE_LIMIT, offset=offset)
            body = self.get(path, page_params)
            items = body.get(key) or []
            yield from items
            offset += len(items)
            try:
                total = int((body.get("meta") or {}).get("total"))
            except (TypeError, ValueError):
                total = None
            if not items or len(items) < PAGE_LIMIT or (total is not None and offset >= total):
                return

    # --- account ------------------------------------------------------------

    def me(self) -> dict:
        """The user the key belongs to; a 403 here means the key is wrong."""
        try:
            return self.get("users/me").get("user") or {}
        except ActiveCampaignError as exc:
            if exc.status in (401, 403):
                raise ActiveCampaignError(
                    exc.status, "ActiveCampaign rejected the API key", transient=False
                ) from None
            raise

    # --- contacts -----------------------------------------------------------

    @staticmethod
    def _contact_body(
        email: str | None,
        first_name: str | None,
        last_name: str | None,
        phone: str | None,
        field_values: dict[str, Any] | None,
    ) -> dict:
        contact: dict[str, Any] = {}
        if email is not None:
            contact["email"] = email
        if first_name is not None:
            contact["firstName"] = first_name
        if last_name is not None:
            contact["lastName"] = last_name
        if phone is not None:
            contact["phone"] = phone
        if field_values:
            contact["fieldValues"] = [
                {"field": str(field), "value": "" if value is None else value}
                for field, value in field_values.items()
            ]
        return {"contact": contact}

    def sync_contact(
        self,
        email: str,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        field_values: dict[str, Any] | None = None,
    ) -> dict:
        """Create or update the contact with this email (``POST /contact/sync``)."""
        body = self._contact_body(email, first_name, last_name, phone, field_values)
        return self.post("contact/sync", body).get("contact") or {}

    def get_contact(self, contact_id: str | int) -> dict:
        return self.get(f"contacts/{contact_id}").get("contact") or {}

    def update_contact(self, contact_id: str | int, **fields: Any) -> dict:
        """Update by id (used for email changes, where sync-by-email would duplicate).

        Accepts ``email``, ``first_name``, ``last_name``, ``phone``, ``field_values``
        or the API's own camelCase names.
        """
        body = self._contact_body(
            fields.pop("email", None),
            fields.pop("first_name", fields.pop("firstName", None)),
            fields.pop("last_name", fields.pop("lastName", None)),
            fields.pop("phone", None),
            fields.pop("field_values", None),
        )
        body["contact"].update(fields)
        return self.put(f"contacts/{contact_id}", body).get("contact") or {}

    def delete_contact(self, contact_id: str | int) -> None:
        self.delete(f"contacts/{contact_id}")

    def find_contact_by_email(self, email: str) -> dict | None:
        contacts = self.get("contacts", {"email": email}).get("contacts") or []
        wanted = email.strip().lower()
        for contact in contacts:
            if str(contact.get("email", "")).lower() == wanted:
                return contact
        return None

    # --- tags ---------------------------------------------------------------

    def list_contact_tags(self, contact_id: str | int) -> list[dict]:
        """The contact's ``contactTag`` rows (their ``id`` is what ``remove_contact_tag`` takes)."""
        return self.get(f"contacts/{contact_id}/contactTags").get("contactTags") or []

    def find_tag(self, name: str) -> dict | None:
        tags = self.get("tags", {"filters[search][eq]": name}).get("tags") or []
        for tag in tags:
            if tag.get("tag") == name:
                return tag
        return None

    def create_tag(self, name: str, description: str = "") -> dict:
        body = {"tag": {"tag": name, "tagType": "contact", "description": description}}
        return self.post("tags", body).get("tag") or {}

    def _cached_tag_id(self, name: str) -> str | None:
        if self.redis is not None:
            value = self.redis.hget(self._tag_cache_key, name)
            return value.decode() if isinstance(value, bytes) else value
        return self._tag_cache.get(name)

    def _cache_tag_id(self, name: str, tag_id: str) -> None:
        if self.redis is not None:
            self.redis.hset(self._tag_cache_key, name, tag_id)
            self.redis.expire(self._tag_cache_key, 86400)
        else:
            self._tag_cache[name] = tag_id

    def forget_tag(self, name: str) -> None:
        """Drop a cached tag id (someone deleted the tag in ActiveCampaign)."""
        if self.redis is not None:
            self.redis.hdel(self._tag_cache_key, name)
        self._tag_cache.pop(name, None)

    def tag_id(self, name: str) -> str | None:
        """The id of an existing tag, from the cache or ActiveCampaign; None if absent."""
        cached = self._cached_tag_id(name)
        if cached:
            return cached
        tag = self.find_tag(name)
        if tag is None:
            return None
        self._cache_tag_id(name, str(tag["id"]))
        return str(tag["id"])

    def ensure_tag(self, name: str) -> str:
        """The id of the tag called ``name``, creating it if needed (cached per account)."""
        existing = self.tag_id(name)
        if existing:
            return existing
        try:
            tag_id = str(self.create_tag(name)["id"])
        except ActiveCampaignError as exc:
            # Another worker created it between our lookup and create.
            if exc.transient or exc.status != 422:
                raise
            tag = self.find_tag(name)
            if tag is None:
                raise
            tag_id = str(tag["id"])
        self._cache_tag_id(name, tag_id)
        return tag_id

    def add_tag(self, contact_id: str | int, tag_id: str | int) -> dict:
        body = {"contactTag": {"contact": str(contact_id), "tag": str(tag_id)}}
        return self.post("contactTags", body).get("contactTag") or {}

    def remove_contact_tag(self, contact_tag_id: str | int) -> None:
        self.delete(f"contactTags/{contact_tag_id}")

    # --- automations and campaigns -------------------------------------------

    def list_automations(self, params: dict[str, Any] | None = None) -> list[dict]:
        return list(self.paginate("automations", "automations", params))

    def add_to_automation(self, contact_id: str | int, automation_id: str | int) -> dict:
        body = {"contactAutomation": {"contact": str(contact_id), "automation": str(automation_id)}}
        return self.post("contactAutomations", body).get("contactAutomation") or {}

    def list_campaigns(self, params: dict[str, Any] | None = None) -> list[dict]:
        return list(self.paginate("campaigns", "campaigns", params))

    def campaign_messages(self, campaign_id: str | int) -> list[dict]:
        return self.get(f"campaigns/{campaign_id}/campaignMessages").get("campaignMessages") or []

    def campaign_send(
        self,
        email: str,
        campaign_id: str | int,
        message_id: str | int,
        type: str = "mime",
        action: str = "send",
    ) -> dict:
        """Send a campaign to one contact (v1 ``campaign_send``: v3 has no such call).

        v1 answers HTTP 200 even on failure; ``result_code`` 0 is the failure.
        The key goes in the header and the POST body, never in the URL.
        """
        response = self.request(
            "POST",
            "admin/api.php campaign_send",
            absolute_url=self.api_url + "/admin/api.php",
            params={"api_action": "campaign_send", "api_output": "json"},
            data={
                "api_key": self._api_key,
                "email": email,
                "campaignid": str(campaign_id),
                "messageid": str(message_id),
                "type": type,
                "action": action,
            },
        )
        try:
            body = response.json()
        except ValueError:
            raise ActiveCampaignError(
                response.status_code, "campaign_send: response is not JSON", transient=True
            ) from None
        if str(body.get("result_code", "0")) != "1":
            message = body.get("result_message") or "campaign could not be sent"
            raise ActiveCampaignError(response.status_code, str(message), transient=False)
        return body

    def activities(self, contact_id: str | int, after: str | None = None, **params: Any) -> dict:
        """The contact's activity feed (the whole response: side-loads matter to the timeline)."""
        query: dict[str, Any] = {"contact": str(contact_id), **params}
        if after:
            query["after"] = after
        return self.get("activities", query)

    # --- bulk import ---------------------------------------------------------

    def bulk_import(
        self, contacts: Iterable[dict], callback: dict[str, Any] | None = None
    ) -> dict:
        """Queue a bulk import (≤250 contacts, <400,000 bytes: the caller batches)."""
        body: dict[str, Any] = {"contacts": list(contacts)}
        if callback:
            body["callback"] = callback
        try:
            return self.post("import/bulk_import", body)
        except ActiveCampaignError as exc:
            if exc.status == 400 and "rate limit" in exc.message.lower():
                raise ActiveCampaignError(exc.status, exc.message, transient=True) from None
            raise

    def import_info(self, batch_id: str) -> dict:
        return self.get("import/info", {"batchId": batch_id})

    # --- webhooks and fields --------------------------------------------------

    def create_webhook(
        self, name: str, url: str, events: list[str], sources: list[str]
    ) -> dict:
        body = {"webhook": {"name": name, "url": url, "events": events, "sources": sources}}
        return self.post("webhooks", body).get("webhook") or {}

    def list_webhooks(self, params: dict[str, Any] | None = None) -> list[dict]:
        return list(self.paginate("webhooks", "webhooks", params))

    def delete_webhook(self, webhook_id: str | int) -> None:
        self.delete(f"webhooks/{webhook_id}")

    def list_fields(self) -> list[dict]:
        return list(self.paginate("fields", "fields"))

