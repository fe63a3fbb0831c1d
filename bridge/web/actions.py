"""Sales actions: ``/api/v1/automations``, ``/api/v1/campaigns`` and ``/api/v1/actions``.

Only holders of the *ActiveCampaign User* security role may call these (the
ribbon's enable rule asks for the same role, so the buttons a user sees are
exactly the ones the server allows). Every action belongs to the caller's
connection; an action id of another organization answers 404.

``POST /actions/...`` answers ``202`` with the action id; the work runs on the
``actions`` queue and ``GET /actions/<id>`` reports each record's progress.
Send an ``Idempotency-Key`` header (or ``idempotency_key`` in the body) to make a
retried POST return the first action instead of starting a second one.
"""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from flask import g, request
from flask_smorest import Blueprint
from sqlalchemy import select

from bridge.action_requests import start_action
from bridge.actions import (
    ADD_TO_AUTOMATION,
    ENTITIES,
    MAX_RECORDS,
    SEND_CAMPAIGN,
    ActionStatus,
    RecordStatus,
    automations,
    campaigns,
)
from bridge.auth import requires_role
from bridge.clients import ActiveCampaignClient, ActiveCampaignError, activecampaign_client
from bridge.errors import ApiError
from bridge.models import ActionLog, Connection

blp = Blueprint(
    "actions",
    __name__,
    url_prefix="/api/v1",
    description="Sales actions: Add to Automation and Send Campaign",
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
SECURITY = [{"entra": []}]


# --- schemas --------------------------------------------------------------------------------


class SalesListQuerySchema(ma.Schema):
    search = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    refresh = ma.fields.Boolean(load_default=False)


class AutomationSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["active", "inactive"]})
    active = ma.fields.Boolean(required=True)
    entered = ma.fields.Integer(required=True, metadata={"description": "contacts ever entered"})
    modified_at = ma.fields.String(allow_none=True)


class AutomationListSchema(ma.Schema):
    automations = ma.fields.List(ma.fields.Nested(AutomationSchema), required=True)


class CampaignSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True,
        metadata={"enum": ["draft", "scheduled", "sending", "paused", "stopped", "completed"]},
    )
    type = ma.fields.String(required=True)
    last_sent_at = ma.fields.String(allow_none=True)
    sendable = ma.fields.Boolean(required=True)


class CampaignListSchema(ma.Schema):
    campaigns = ma.fields.List(ma.fields.Nested(CampaignSchema), required=True)


class _ActionRequestSchema(ma.Schema):
    entity = ma.fields.String(required=True, validate=ma.validate.OneOf(ENTITIES))
    record_ids = ma.fields.List(
        ma.fields.Raw(),
        required=True,
        metadata={
            "description": f"1–{MAX_RECORDS} Dynamics record ids (braces and case are ignored)"
        },
    )
    idempotency_key = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=200),
        metadata={"description": f"the same as the {IDEMPOTENCY_HEADER} header (either works)"},
    )


class AddToAutomationRequestSchema(_ActionRequestSchema):
    automation_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=20))


class SendCampaignRequestSchema(_ActionRequestSchema):
    campaign_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=20))


class ActionAcceptedSchema(ma.Schema):
    action_id = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    status_url = ma.fields.String(required=True)


class ActionRecordResultSchema(ma.Schema):
    record_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": list(RecordStatus.ALL)})
    detail = ma.fields.String(required=True)
    ac_contact_id = ma.fields.String(allow_none=True)
    updated_at = ma.fields.String(allow_none=True)


class SalesActionSchema(ma.Schema):
    action_id = ma.fields.Integer(required=True)
    action = ma.fields.String(required=True, metadata={"enum": [ADD_TO_AUTOMATION, SEND_CAMPAIGN]})
    target_id = ma.fields.String(required=True)
    target_name = ma.fields.String(required=True)
    entity = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True, metadata={"enum": ["queued", "running", "done"]}
    )
    finished = ma.fields.Boolean(required=True)
    user_name = ma.fields.String(required=True)
    created_at = ma.fields.String(required=True)
    finished_at = ma.fields.String(allow_none=True)
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True)
    records = ma.fields.List(ma.fields.Nested(ActionRecordResultSchema), required=True)


# --- helpers --------------------------------------------------------------------------------


def web_runtime():
    from bridge.web import current_runtime

    return current_runtime()


def caller_connection() -> Connection:
    runtime = web_runtime()
    with runtime.db.session() as session:
        connection = session.get(Connection, g.user.connection_id)
        if connection is None:
            raise ApiError(403, "unknown_organization", "this organization is not connected")
        session.expunge(connection)
    return connection


def waiting_ac_client(connection: Connection) -> ActiveCampaignClient:
    try:
        client = activecampaign_client(web_runtime(), connection)
    except LookupError:
        raise ApiError(
            409,
            "activecampaign_not_connected",
            "ActiveCampaign is not connected yet; an administrator connects it in Settings",
        ) from None
    # The user waits on these calls: fail fast rather than retrying for half a minute.
    client.max_attempts = 2
    client.timeout = 15
    return client


def activecampaign_failure(exc: ActiveCampaignError) -> ApiError:
    """The API error a page shows when ActiveCampaign fails a call made while it waits."""
    if exc.transient:
        return ApiError(
            503,
            "activecampaign_unavailable",
            "ActiveCampaign did not answer; try again in a moment",
            headers={"Retry-After": "5"},
        )
    if exc.status in (401, 403) and "Forbidden" in exc.message:
        return ApiError(
            502,
            "activecampaign_rejected_key",
            "ActiveCampaign rejected the bridge's API key; an administrator must reconnect it",
        )
    return ApiError(502, "activecampaign_error", f"ActiveCampaign refused: {exc.message}")


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialise_action(row: ActionLog) -> dict:
    results = row.results or {}
    records = []
    counts: dict[str, int] = {}
    for record_id in row.record_ids or []:
        result = results.get(record_id) or {}
        status = result.get("status", RecordStatus.QUEUED)
        counts[status] = counts.get(status, 0) + 1
        records.append(
            {
                "record_id": record_id,
                "status": status,
                "detail": result.get("detail", ""),
                "ac_contact_id": result.get("ac_contact_id"),
                "updated_at": result.get("updated_at"),
            }
        )
    return {
        "action_id": row.id,
        "action": row.action,
        "target_id": row.target_id,
        "target_name": row.target_name,
        "entity": row.entity,
        "status": row.status,
        "finished": row.status == ActionStatus.DONE,
        "user_name": row.user_name,
        "created_at": _iso(row.created_at),
        "finished_at": _iso(row.finished_at),
        "counts": counts,
        "records": records,
    }


def _accepted(action_id: int, status: str):
    url = f"/api/v1/actions/{action_id}"
    body = {"action_id": action_id, "status": status, "status_url": url}
    return body, 202, {"Location": url}


def _start(action: str, body: dict, target_id: str):
    connection = caller_connection()
    client_key = (request.headers.get(IDEMPOTENCY_HEADER) or body.get("idempotency_key") or "")
    action_id, status = start_action(
        web_runtime(),
        user=g.user,
        connection=connection,
        ac=waiting_ac_client(connection),
        action=action,
        entity=body["entity"],
        raw_record_ids=body["record_ids"],
        target_id=target_id,
        client_key=client_key.strip(),
        activecampaign_failure=activecampaign_failure,
    )
    return _accepted(action_id, status)


# --- routes ---------------------------------------------------------------------------------


@blp.route("/automations")
@blp.response(200, AutomationListSchema)
@blp.doc(security=SECURITY)
@requires_role("sales")
@blp.arguments(SalesListQuerySchema, location="query")
def list_automations(query):
    """The ActiveCampaign account's automations: active ones first, then by name."""
    connection = caller_connection()
    try:
        items = automations(web_runtime().redis, connection.id, waiting_ac_client(connection),
                            search=query["search"], refresh=query["refresh"])
    except ActiveCampaignError as exc:
        raise activecampaign_failure(exc) from None
    return {"automations": items}


@blp.route("/campaigns")
@blp.response(200, CampaignListSchema)
@blp.doc(security=SECURITY)
@requires_role("sales")
@blp.arguments(SalesListQuerySchema, location="query")
def list_campaigns(query):
    """Campaigns that can be sent to one contact (single/split, not drafts), latest first."""
    connection = caller_connection()
    try:
        items = campaigns(web_runtime().redis, connection.id, waiting_ac_client(connection),
                          search=query["search"], refresh=query["refresh"])
    except ActiveCampaignError as exc:
        raise activecampaign_failure(exc) from None
    return {"campaigns": items}


@blp.route("/actions/add-to-automation", methods=["POST"])
@blp.response(202, ActionAcceptedSchema)
@blp.doc(security=SECURITY)
@requires_role("sales")
@blp.arguments(AddToAutomationRequestSchema)
def add_to_automation(body):
    """Add records to an automation (synced to ActiveCampaign first when needed)."""
    return _start(ADD_TO_AUTOMATION, body, body["automation_id"].strip())


@blp.route("/actions/send-campaign", methods=["POST"])
@blp.response(202, ActionAcceptedSchema)
@blp.doc(security=SECURITY)
@requires_role("sales")
@blp.arguments(SendCampaignRequestSchema)
def send_campaign(body):
    """Send a campaign's message to each record's contact (v1 ``campaign_send``)."""
    return _start(SEND_CAMPAIGN, body, body["campaign_id"].strip())


@blp.route("/actions/<int:action_id>")
@blp.response(200, SalesActionSchema)
@blp.doc(security=SECURITY)
@requires_role("sales")
def get_action(action_id: int):
    """Progress and per-record results of one action of the caller's organization."""
    with web_runtime().db.session() as session:
        row = session.scalar(
            select(ActionLog).where(
                ActionLog.id == action_id, ActionLog.connection_id == g.user.connection_id
            )
        )
        if row is None:
            raise ApiError(404, "unknown_action", f"There is no action {action_id}.")
        return serialise_action(row)
