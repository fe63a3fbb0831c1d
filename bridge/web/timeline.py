"""``GET /api/v1/records/<entity>/<id>/activities``: the record's marketing-activity timeline.

Requires the *ActiveCampaign User* role, like the ribbon's "Marketing activity"
command (whose enable rule asks for the same role). Administrators without
that role are refused here as they are in the ribbon: one rule, two places.

A record that is not in ActiveCampaign answers ``200`` with ``state:
"not_synced"`` and the reason; ActiveCampaign being unreachable answers
``503`` (``activecampaign_unavailable``) so the panel can offer a retry.
"""

from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint

from bridge.actions import ENTITIES
from bridge.auth import requires_role
from bridge.clients import ActiveCampaignError, DataverseError, dataverse_client
from bridge.errors import ApiError
from bridge.timeline import (
    DEFAULT_PAGE,
    KINDS,
    MAX_PAGE,
    REASONS,
    RecordNotFound,
    activity_page,
    resolve_contact,
)
from bridge.web.actions import (
    activecampaign_failure,
    caller_connection,
    waiting_ac_client,
    web_runtime,
)

blp = Blueprint(
    "timeline", __name__, url_prefix="/api/v1", description="Marketing-activity timeline"
)


class TimelineQuerySchema(ma.Schema):
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=100_000))
    limit = ma.fields.Integer(
        load_default=DEFAULT_PAGE, validate=ma.validate.Range(min=1, max=MAX_PAGE)
    )


class ActivityRefSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(allow_none=True)


class ActivitySourceSchema(ma.Schema):
    reference_type = ma.fields.String(required=True)
    reference_action = ma.fields.String(required=True)


class TimelineItemSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "ActiveCampaign activity id"})
    kind = ma.fields.String(required=True, metadata={"enum": list(KINDS)})
    icon = ma.fields.String(required=True)
    text = ma.fields.String(required=True, metadata={"description": "a readable sentence"})
    occurred_at = ma.fields.String(allow_none=True, metadata={"description": "ISO 8601, UTC"})
    ac_url = ma.fields.String(
        allow_none=True, metadata={"description": "the campaign report or automation in AC"}
    )
    link_url = ma.fields.String(allow_none=True, metadata={"description": "the clicked link"})
    campaign = ma.fields.Nested(ActivityRefSchema, allow_none=True)
    automation = ma.fields.Nested(ActivityRefSchema, allow_none=True)
    source = ma.fields.Nested(ActivitySourceSchema, required=True)


class TimelineRecordSchema(ma.Schema):
    entity = ma.fields.String(required=True)
    id = ma.fields.String(required=True)


class TimelineContactSchema(ma.Schema):
    id = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    url = ma.fields.String(required=True, metadata={"description": "the contact in ActiveCampaign"})


class TimelineSchema(ma.Schema):
    record = ma.fields.Nested(TimelineRecordSchema, required=True)
    state = ma.fields.String(required=True, metadata={"enum": ["ok", "empty", "not_synced"]})
    reason_code = ma.fields.String(allow_none=True, metadata={"enum": sorted(REASONS)})
    reason = ma.fields.String(allow_none=True)
    contact = ma.fields.Nested(TimelineContactSchema, allow_none=True)
    items = ma.fields.List(ma.fields.Nested(TimelineItemSchema), required=True)
    total = ma.fields.Integer(required=True)
    offset = ma.fields.Integer(required=True)
    limit = ma.fields.Integer(required=True)
    has_more = ma.fields.Boolean(required=True)
    next_offset = ma.fields.Integer(allow_none=True)


def _record_id(value: str) -> str:
    from bridge.actions import normalise_record_ids

    ids, problems = normalise_record_ids([value])
    if problems or not ids:
        raise ApiError(422, "invalid_record_id", "The record id is not a valid id.")
    return ids[0]


@blp.route("/records/<string:entity>/<string:record_id>/activities")
@blp.response(200, TimelineSchema)
@blp.doc(security=[{"entra": []}])
@requires_role("sales")
@blp.arguments(TimelineQuerySchema, location="query")
def record_activities(query, entity: str, record_id: str):
    """The record's ActiveCampaign activity, newest first, ``limit`` items from ``offset``."""
    if entity not in ENTITIES:
        raise ApiError(404, "unknown_table", "Only leads and contacts have a timeline.")
    record_id = _record_id(record_id)
    runtime = web_runtime()
    connection = caller_connection()
    ac = waiting_ac_client(connection)
    dv = dataverse_client(runtime, connection)
    base = {
        "record": {"entity": entity, "id": record_id},
        "offset": query["offset"],
        "limit": query["limit"],
    }
    try:
        resolution = resolve_contact(runtime, connection, ac, dv, entity, record_id)
        if resolution.contact is None:
            return {
                **base, "state": "not_synced", "reason_code": resolution.reason_code,
                "reason": resolution.reason, "contact": None, "items": [], "total": 0,
                "has_more": False, "next_offset": None,
            }
        contact = resolution.contact
        page = activity_page(runtime, connection.id, ac, contact, query["offset"], query["limit"])
    except RecordNotFound:
        raise ApiError(404, "unknown_record", f"There is no {entity} {record_id}.") from None
    except ActiveCampaignError as exc:
        if exc.status == 404:  # the linked contact was deleted in ActiveCampaign
            return {
                **base, "state": "not_synced", "reason_code": "not_synced_yet",
                "reason": "The linked ActiveCampaign contact no longer exists; the next sync "
                "creates it again.", "contact": None, "items": [], "total": 0,
                "has_more": False, "next_offset": None,
            }
        raise activecampaign_failure(exc) from None
    except DataverseError as exc:
        raise ApiError(
            503, "dynamics_unavailable", f"Dynamics did not answer: {exc.message}",
            headers={"Retry-After": "5"},
        ) from None
    return {
        **base,
        "state": "ok" if page["items"] or query["offset"] else "empty",
        "reason_code": None,
        "reason": None if page["items"] else "No marketing activity yet.",
        "contact": {"id": contact.id, "email": contact.email, "url": page["contact_url"]},
        "items": page["items"],
        "total": page["total"],
        "has_more": page["has_more"],
        "next_offset": page["next_offset"],
    }

