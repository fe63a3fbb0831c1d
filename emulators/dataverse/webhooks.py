"""Webhook steps: matching, RemoteExecutionContext bodies, and delivery with Dataverse's rules.

The body mimics ``DataContractJsonSerializer`` output seen in the real samples: alphabetical
top-level keys, ``{"key","value"}`` arrays, ``__type`` first in typed objects, every ``/``
written as ``\\/`` and dates as ``\\/Date(ms)\\/``. Delivery: POST, timeout ``webhook_timeout``,
non-2xx or timeout = failure, 502/503/504 retried exactly once, nothing else retried. Sync steps
run in the writing request (a failure fails the write), async steps on one background thread
in order after commit.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from .metadata import CHOICE_TYPES, DATETIME, MONEY, Table
from .store import Ref, Row, Store

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY_TYPE = f"Entity:{CONTRACTS}"
REF_TYPE = f"EntityReference:{CONTRACTS}"
OPTION_TYPE = f"OptionSetValue:{CONTRACTS}"
MONEY_TYPE = f"Money:{CONTRACTS}"
MAX_BODY = 256 * 1024
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
RETRIED_STATUSES = frozenset({502, 503, 504})


@dataclass
class Change:
    """One completed Create/Update/Delete, with everything a context needs."""

    table: Table
    message: str
    record_id: str
    request_attrs: dict[str, Any]  # what the caller sent (ParentContext Target)
    target_attrs: dict[str, Any]  # what the post-operation Target holds
    pre: Row | None
    post: Row | None
    user_id: str
    initiating_user_id: str
    user_aad_id: str = ZERO_GUID
    initiating_aad_id: str = ZERO_GUID
    user_agent: str = ""
    tag: str | None = None
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    operation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)


@dataclass
class Plan:
    """A step to deliver for a change: the prepared request."""

    step: Row
    url: str
    headers: dict[str, str]
    body: bytes
    change: Change


class WebhookFailure(Exception):
    def __init__(self, message: str, delivery: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.delivery = delivery


def date_string(value: dt.datetime | float) -> str:
    ms = int((value.timestamp() if isinstance(value, dt.datetime) else value) * 1000)
    return f"/Date({ms})/"


def entity_reference(
    entity: str, record_id: str, name: str | None = None, typed: bool = True
) -> dict[str, Any]:
    ref: dict[str, Any] = {"__type": REF_TYPE} if typed else {}
    ref.update(
        {
            "Id": record_id,
            "KeyAttributes": [],
            "LogicalName": entity,
            "Name": name,
            "RowVersion": None,
        }
    )
    return ref


def context_value(table: Table, name: str, value: Any) -> Any:
    col = table.columns.get(name)
    if value is None:
        return None
    if isinstance(value, Ref):
        return entity_reference(value.entity, value.id)
    if col is not None and col.type in CHOICE_TYPES:
        return {"__type": OPTION_TYPE, "Value": value}
    if col is not None and col.type == MONEY:
        return {"__type": MONEY_TYPE, "Value": value}
    if isinstance(value, dt.datetime):
        return date_string(value)
    return value


def entity_object(
    table: Table, record_id: str, attrs: dict[str, Any], typed: bool, row_version: str | None = None
) -> dict[str, Any]:
    formatted = []
    for name, value in attrs.items():
        col = table.columns.get(name)
        if value is None or col is None:
            continue
        if col.type in CHOICE_TYPES and col.label(value):
            formatted.append({"key": name, "value": col.label(value)})
        elif col.type == DATETIME:
            formatted.append({"key": name, "value": value.strftime("%Y-%m-%dT%H:%M:%S-00:00")})
    obj: dict[str, Any] = {"__type": ENTITY_TYPE} if typed else {}
    obj.update(
        {
            "Attributes": [
                {"key": k, "value": context_value(table, k, v)} for k, v in attrs.items()
            ],
            "EntityState": None,
            "FormattedValues": formatted,
            "Id": record_id,
            "KeyAttributes": [],
            "LogicalName": table.logical_name,
            "RelatedEntities": [],
            "RowVersion": row_version,
        }
    )
    return obj


def _image_attrs(table: Table, row: Row, columns: str | None) -> dict[str, Any]:
    wanted = [c.strip() for c in (columns or "").split(",") if c.strip()]
    names = wanted or [c for c in row if c != "versionnumber"]
    return {n: row.get(n) for n in names if row.get(n) is not None}


def parse_settings(xml_text: str) -> list[tuple[str, str]]:
    """``<settings><setting name="k" value="v" /></settings>`` -> pairs (HttpHeader/QueryString)."""
    root = ET.fromstring(xml_text)
    if root.tag != "settings":
        raise ValueError("root element must be <settings>")
    return [(s.attrib["name"], s.attrib.get("value", "")) for s in root.findall("setting")]


def dumps_datacontract(obj: Any) -> bytes:
    """JSON with every ``/`` escaped as ``\\/`` (DataContractJsonSerializer style)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("/", "\\/").encode("utf-8")


class WebhookDispatcher:
    """Finds the steps a change triggers, builds bodies and delivers them."""

    def __init__(
        self,
        store: Store,
        org: dict[str, str],
        timeout: float,
        on_async_result: Callable[[Plan, dict[str, Any]], None],
    ) -> None:
        self.store = store
        self.org = org  # id, name, url, business_unit_id
        self.timeout = timeout
        self.on_async_result = on_async_result
        self.deliveries: list[dict[str, Any]] = []
        self._done = threading.Condition()
        self._queue: queue.Queue[Plan | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="dataverse-webhooks", daemon=True)
        self._worker.start()

    # --- matching ----------------------------------------------------------------------------
    def matching_steps(self, change: Change) -> list[tuple[Row, Row]]:
        """Enabled webhook steps (with their endpoint) for this change, in (mode, rank) order."""
        messages = {r["sdkmessageid"]: r["name"] for r in self.store.all_rows("sdkmessage")}
        filters = {r["sdkmessagefilterid"]: r for r in self.store.all_rows("sdkmessagefilter")}
        found = []
        for step in self.store.all_rows("sdkmessageprocessingstep"):
            handler = step.get("eventhandler")
            if step.get("statecode", 0) != 0 or not isinstance(handler, Ref):
                continue
            if handler.entity != "serviceendpoint":
                continue
            endpoint = self.store.get("serviceendpoint", handler.id)
            if endpoint is None or endpoint.get("contract") != 8:
                continue
            msg = step.get("sdkmessageid")
            if not isinstance(msg, Ref) or messages.get(msg.id) != change.message:
                continue
            flt = step.get("sdkmessagefilterid")
            flt_row = filters.get(flt.id) if isinstance(flt, Ref) else None
            if flt_row is None or flt_row.get("primaryobjecttypecode") != change.table.logical_name:
                continue
            if change.message == "Update" and step.get("filteringattributes"):
                wanted = {a.strip().lower() for a in step["filteringattributes"].split(",")}
                if not wanted & set(change.target_attrs):
                    continue
            found.append((step, endpoint))
        found.sort(key=lambda se: (se[0].get("mode", 0), se[0].get("rank") or 0))
        return found

    def plans(self, change: Change) -> list[Plan]:
        return [
            self._plan(change, step, endpoint) for step, endpoint in self.matching_steps(change)
        ]

    # --- context -----------------------------------------------------------------------------
    def build_context(self, change: Change, step: Row) -> dict[str, Any]:
        table, rid = change.table, change.record_id
        mode = step.get("mode", 0)
        op_time = date_string(change.created_at)
        step_id = step["sdkmessageprocessingstepid"]
        owning = entity_reference(
            "sdkmessageprocessingstep", step_id, step.get("name"), typed=False
        )
        version = str(change.post["versionnumber"]) if change.post else None
        if change.message == "Delete":
            target: dict[str, Any] = entity_reference(table.logical_name, rid)
            parent_target = target
        else:
            target = entity_object(table, rid, change.target_attrs, True, version)
            parent_attrs = {**change.request_attrs, table.primary_id: rid}
            parent_target = entity_object(table, rid, parent_attrs, True)
        pre_images, post_images = [], []
        if mode == 1 and change.post is not None:
            primary = {
                table.primary_name: change.post.get(table.primary_name),
                table.primary_id: rid,
            }
            primary = {k: v for k, v in primary.items() if v is not None}
            post_images.append(
                {
                    "key": "AsynchronousStepPrimaryName",
                    "value": entity_object(table, rid, primary, False),
                }
            )
        for image in self.store.find(
            "sdkmessageprocessingstepimage",
            sdkmessageprocessingstepid=Ref("sdkmessageprocessingstep", step_id),
        ):
            kind = image.get("imagetype", 0)
            alias = image.get("entityalias") or image.get("name") or "Image"
            if kind in (0, 2) and change.pre is not None:
                attrs = _image_attrs(table, change.pre, image.get("attributes"))
                pre_images.append({"key": alias, "value": entity_object(table, rid, attrs, False)})
            if kind in (1, 2) and change.post is not None:
                attrs = _image_attrs(table, change.post, image.get("attributes"))
                post_images.append({"key": alias, "value": entity_object(table, rid, attrs, False)})
        shared = [{"key": "IsAutoTransact", "value": True}, {"key": "AcceptLang", "value": ""}]
        if change.tag is not None:
            shared.append({"key": "tag", "value": change.tag})
        output = [{"key": "id", "value": rid}] if change.message == "Create" else []

        def context(
            stage: int, inputs: Any, outputs: list, pre: list, post: list, parent: Any, created: str
        ) -> dict[str, Any]:
            ctx = {
                "BusinessUnitId": self.org["business_unit_id"],
                "CorrelationId": change.correlation_id,
                "Depth": 1,
                "InitiatingUserAgent": change.user_agent,
                "InitiatingUserAzureActiveDirectoryObjectId": change.initiating_aad_id,
                "InitiatingUserId": change.initiating_user_id,
                "InputParameters": [{"key": "Target", "value": inputs}],
                "IsExecutingOffline": False,
                "IsInTransaction": mode == 0,
                "IsOfflinePlayback": False,
                "IsolationMode": 1,
                "MessageName": change.message,
                "Mode": mode,
                "OperationCreatedOn": created,
                "OperationId": change.operation_id,
                "OrganizationId": self.org["id"],
                "OrganizationName": self.org["name"],
                "OutputParameters": outputs,
                "OwningExtension": owning,
                "ParentContext": parent,
                "PostEntityImages": post,
                "PreEntityImages": pre,
                "PrimaryEntityId": rid,
                "PrimaryEntityName": table.logical_name,
                "RequestId": change.request_id,
                "SecondaryEntityName": "none",
                "SharedVariables": list(shared),
                "Stage": stage,
                "UserAzureActiveDirectoryObjectId": change.user_aad_id,
                "UserId": change.user_id,
            }
            return {k: ctx[k] for k in sorted(ctx)}

        parent = context(30, parent_target, [], [], [], None, op_time)
        return context(
            step.get("stage") or 40, target, output, pre_images, post_images, parent, op_time
        )

    def _plan(self, change: Change, step: Row, endpoint: Row) -> Plan:
        ctx = self.build_context(change, step)
        body = dumps_datacontract(ctx)
        headers = {
            "x-ms-dynamics-organization": urlsplit(self.org["url"]).netloc,
            "x-ms-dynamics-entity-name": change.table.logical_name,
            "x-ms-dynamics-request-name": change.message,
            "x-ms-correlation-request-id": change.correlation_id,
            "Content-Type": "application/json",
        }
        if len(body) > MAX_BODY:
            for key in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                ctx.pop(key, None)
            body = dumps_datacontract(ctx)
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        url = endpoint.get("url") or ""
        authtype, authvalue = endpoint.get("authtype"), endpoint.get("authvalue") or ""
        query: list[tuple[str, str]] = []
        if authtype == 4:
            query = [("code", authvalue)]
        elif authtype in (5, 6):
            try:
                pairs = parse_settings(authvalue)
            except (ET.ParseError, KeyError, ValueError):
                pairs = None
            if pairs is None:
                headers["x-emulator-invalid-authvalue"] = "1"
            elif authtype == 5:
                headers.update(pairs)
            else:
                query = pairs
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"
        return Plan(step, url, headers, body, change)

    # --- delivery ----------------------------------------------------------------------------
    def deliver(self, plan: Plan) -> dict[str, Any]:
        """POST once (twice for 502/503/504) and record the delivery."""
        status: int | None = None
        error = ""
        attempts = 0
        if plan.headers.pop("x-emulator-invalid-authvalue", None):
            error = (
                "The webhook call failed because of invalid http headers in authValue. "
                "Check if the authValue format, header names and values are valid for your "
                "Service Endpoint entity. ErrorCode: 0x80050203"
            )
        else:
            while attempts < 2:
                attempts += 1
                try:
                    resp = requests.post(
                        plan.url, data=plan.body, headers=plan.headers, timeout=self.timeout
                    )
                    status, error = resp.status_code, ""
                except requests.Timeout:
                    status, error = None, "The webhook call timed out."
                except requests.RequestException as exc:
                    status, error = None, f"The webhook call failed: {type(exc).__name__}"
                if status not in RETRIED_STATUSES:
                    break
        ok = status is not None and 200 <= status < 300
        if not ok and not error:
            error = f"The webhook call failed because the endpoint returned HTTP status {status}."
        record = {
            "url": plan.url,
            "headers": dict(plan.headers),
            "body": plan.body,
            "status": status,
            "attempts": attempts,
            "step_id": plan.step["sdkmessageprocessingstepid"],
            "entity": plan.change.table.logical_name,
            "message": plan.change.message,
            "mode": plan.step.get("mode", 0),
            "operation_id": plan.change.operation_id,
            "ok": ok,
            "error": error,
            "delivered_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        with self._done:
            self.deliveries.append(record)
            self._done.notify_all()
        return record

    def deliver_sync(self, plans: list[Plan]) -> None:
        for plan in plans:
            record = self.deliver(plan)
            if not record["ok"]:
                raise WebhookFailure(record["error"], record)

    def enqueue(self, plans: list[Plan]) -> None:
        for plan in plans:
            self._queue.put(plan)

    def _run(self) -> None:
        while True:
            plan = self._queue.get()
            if plan is None:
                return
            try:
                record = self.deliver(plan)
                self.on_async_result(plan, record)
            except Exception:  # noqa: BLE001 - keep the worker alive whatever happens
                pass

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._done:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self.deliveries)} of {count} webhook deliveries "
                        f"finished within {timeout} s"
                    )
                self._done.wait(left)
            return list(self.deliveries)

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=2)
