"""Payloads of the admin API (``/api/v1/admin/...``): one marshmallow schema per payload.

These schemas are the contract of the admin pages (``webresources/html/*.html``) and feed the
OpenAPI document at ``/api/v1/openapi.json``. Request schemas only check shape; the rules that
need Dynamics or ActiveCampaign (a reachable account, a compatible column) live in
``bridge.admin`` and answer 400 with per-field errors in the same ``fields`` shape.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

FREQUENCIES = (1, 2, 4, 6, 8, 12, 24)
OPERATORS = (
    "eq",
    "ne",
    "contains",
    "begins_with",
    "is_empty",
    "is_not_empty",
    "gt",
    "lt",
    "on",
    "before",
    "after",
)
DIRECTIONS = ("both", "to_activecampaign", "to_dynamics")
ENTITIES = ("lead", "contact")


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


# --- Settings / Connect --------------------------------------------------------------------


class ConnectRequestSchema(StrictSchema):
    api_url = ma.fields.String(required=True, validate=validate.Length(min=1, max=300))
    api_key = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))


class ConnectionStatusSchema(ma.Schema):
    connected = ma.fields.Boolean(required=True)
    org_url = ma.fields.String(required=True)
    ac_api_url = ma.fields.String(allow_none=True)
    ac_account = ma.fields.String(allow_none=True, metadata={"description": "the key's user"})
    ac_api_key_last4 = ma.fields.String(allow_none=True)
    connected_by = ma.fields.String(allow_none=True)
    connected_at = ma.fields.DateTime(allow_none=True)
    dataverse_webhooks = ma.fields.Integer(metadata={"description": "webhook steps registered"})
    activecampaign_webhook = ma.fields.Boolean()


# --- Sync Settings -------------------------------------------------------------------------


class InitialSyncProgressSchema(ma.Schema):
    run_id = ma.fields.Integer(allow_none=True)
    status = ma.fields.String(required=True)
    total = ma.fields.Integer(required=True)
    done = ma.fields.Integer(required=True)
    failed = ma.fields.Integer(required=True)
    rate_per_s = ma.fields.Float(required=True)
    eta_s = ma.fields.Float(allow_none=True)
    error = ma.fields.String(allow_none=True)


class SyncSettingsSchema(ma.Schema):
    global_sync_enabled = ma.fields.Boolean(required=True)
    sync_frequency_hours = ma.fields.Integer(required=True)
    frequencies = ma.fields.List(ma.fields.Integer(), required=True)
    initial_sync = ma.fields.Nested(InitialSyncProgressSchema, required=True)


class SyncSettingsUpdateSchema(StrictSchema):
    global_sync_enabled = ma.fields.Boolean()
    sync_frequency_hours = ma.fields.Integer(
        validate=validate.OneOf(FREQUENCIES, error="choose 1, 2, 4, 6, 8, 12 or 24 hours")
    )


# --- User Management -----------------------------------------------------------------------


class DynamicsUserSchema(ma.Schema):
    systemuser_id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    has_role = ma.fields.Boolean()


class UserListSchema(ma.Schema):
    role = ma.fields.String(required=True)
    users = ma.fields.List(ma.fields.Nested(DynamicsUserSchema), required=True)


class UserSearchArgsSchema(ma.Schema):
    q = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))


class AddUserSchema(StrictSchema):
    systemuser_id = ma.fields.UUID(required=True)


# --- Data Configuration --------------------------------------------------------------------


class CriterionSchema(StrictSchema):
    field = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))
    operator = ma.fields.String(required=True, validate=validate.OneOf(OPERATORS))
    value = ma.fields.Raw(allow_none=True, load_default=None)


class FieldMappingSchema(StrictSchema):
    ac_field = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))
    dynamics_column = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))
    direction = ma.fields.String(load_default="both", validate=validate.OneOf(DIRECTIONS))
    option_map = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.String(), load_default=dict
    )


class EntityConfigSchema(StrictSchema):
    enabled = ma.fields.Boolean(required=True)
    mode = ma.fields.String(required=True, validate=validate.OneOf(("all", "criteria")))
    criteria = ma.fields.List(ma.fields.Nested(CriterionSchema), required=True)
    field_mappings = ma.fields.List(ma.fields.Nested(FieldMappingSchema), required=True)


class EntityConfigOutSchema(EntityConfigSchema):
    entity = ma.fields.String(required=True)


class OptionSchema(ma.Schema):
    value = ma.fields.String(required=True)
    label = ma.fields.String(required=True)


class DynamicsColumnSchema(ma.Schema):
    name = ma.fields.String(required=True)
    label = ma.fields.String(required=True)
    type = ma.fields.String(required=True)
    required = ma.fields.Boolean(required=True)
    custom = ma.fields.Boolean(required=True)
    options = ma.fields.List(ma.fields.Nested(OptionSchema))


class AcFieldSchema(ma.Schema):
    id = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    type = ma.fields.String(required=True)
    standard = ma.fields.Boolean(required=True)
    options = ma.fields.List(ma.fields.Nested(OptionSchema))


class FieldMetadataSchema(ma.Schema):
    entity = ma.fields.String(required=True)
    dynamics = ma.fields.List(ma.fields.Nested(DynamicsColumnSchema), required=True)
    activecampaign = ma.fields.List(ma.fields.Nested(AcFieldSchema), required=True)
    compatibility = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), required=True
    )
    operators = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), required=True
    )
    standard_mappings = ma.fields.List(ma.fields.Nested(FieldMappingSchema), required=True)


# --- Sync Health ---------------------------------------------------------------------------


class HealthCountsSchema(ma.Schema):
    synced = ma.fields.Integer(required=True)
    excluded = ma.fields.Integer(required=True)
    failing = ma.fields.Integer(required=True)
    pending = ma.fields.Integer(required=True)


class FailingRecordSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    entity = ma.fields.String(required=True)
    dynamics_id = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    updated_at = ma.fields.DateTime(allow_none=True)


class SyncRunSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    records_total = ma.fields.Integer()
    records_done = ma.fields.Integer()
    records_failed = ma.fields.Integer()
    error = ma.fields.String(allow_none=True)


class SyncHealthSchema(ma.Schema):
    counts = ma.fields.Nested(HealthCountsSchema, required=True)
    failing = ma.fields.List(ma.fields.Nested(FailingRecordSchema), required=True)
    runs = ma.fields.List(ma.fields.Nested(SyncRunSchema), required=True)


class RetryResultSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    queued = ma.fields.Boolean(required=True)
