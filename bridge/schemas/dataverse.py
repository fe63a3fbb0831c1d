"""Marshmallow schemas for the body of a Dataverse webhook (``RemoteExecutionContext``).

Dataverse serialises the plug-in execution context with .NET's
DataContractJsonSerializer, which is awkward to consume as is: dictionaries
are arrays of ``{"key": ..., "value": ...}``, dates are ``"/Date(ms+hhmm)/"``
strings and polymorphic values carry a ``"__type"`` hint. These schemas turn
that into plain Python (dicts, aware datetimes, ``Entity``/``EntityReference``)
and keep every key we do not use out (``unknown=EXCLUDE``), so new fields
Microsoft adds never break the fast path.

The webhook view only needs a handful of facts, so ``WebhookEventSchema``
produces a small ``WebhookEvent``; ``RemoteExecutionContextSchema`` gives the
whole parsed context to anyone who needs more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

NIL_GUID = "00000000-0000-0000-0000-000000000000"

# "/Date(1506409448000-0700)/" once JSON has unescaped "\/"; the offset is display-only.
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)(?:([+-])(\d{2})(\d{2}))?\)/$")


# --- plain values ---------------------------------------------------------


def parse_dotnet_date(value: str) -> dt.datetime:
    """``"/Date(ms)/"``, ``"/Date(ms+0000)/"`` or ``"/Date(ms-0700)/"`` → an aware datetime.

    The milliseconds are always UTC; the offset only says where the instant
    was displayed, so it becomes the datetime's zone without moving the instant.
    """
    match = _DOTNET_DATE.match(value.replace("\\/", "/"))
    if not match:
        raise ValueError(f"not a /Date(...)/ value: {value!r}")
    millis, sign, hours, minutes = match.groups()
    zone = dt.UTC
    if sign:
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
        zone = dt.timezone(-offset if sign == "-" else offset)
    return dt.datetime.fromtimestamp(int(millis) / 1000, tz=dt.UTC).astimezone(zone)


def normalize_guid(value: Any) -> str:
    """A GUID as Dataverse's Web API writes it: lower case, no braces."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    return str(uuid.UUID(value.strip().strip("{}")))


def sdk_type_name(value: Mapping[str, Any]) -> str | None:
    """The short type of a ``__type`` hint: ``"Entity:http:\\/\\/schemas..."`` → ``"Entity"``.

    The contract namespace after the colon may have escaped or plain slashes;
    only the name before it matters.
    """
    hint = value.get("__type")
    if not isinstance(hint, str) or not hint:
        return None
    return hint.split(":", 1)[0].strip()


@dataclass(frozen=True)
class EntityReference:
    """A lookup value or a Delete ``Target``: which row, not its columns."""

    logical_name: str | None
    id: str | None
    name: str | None = None
    key_attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entity:
    """A row as Dataverse sends it: on Update only the changed columns are present."""

    logical_name: str | None
    id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    formatted_values: dict[str, Any] = field(default_factory=dict)
    key_attributes: dict[str, Any] = field(default_factory=dict)
    row_version: str | None = None


def _looks_like_entity(value: Mapping[str, Any]) -> bool:
    kind = sdk_type_name(value)
    if kind is not None:
        return kind == "Entity"
    return "Attributes" in value and "LogicalName" in value


def _looks_like_reference(value: Mapping[str, Any]) -> bool:
    kind = sdk_type_name(value)
    if kind is not None:
        return kind == "EntityReference"
    return "LogicalName" in value and "Id" in value and "Attributes" not in value


def convert_sdk_value(value: Any) -> Any:
    """Turn one serialised SDK value into Python.

    Dates become aware datetimes, entities and references become dataclasses,
    ``[{"key":..,"value":..}]`` lists become dicts; other ``__type`` objects
    (OptionSetValue, Money, ...) stay dicts with their values converted.
    """
    if isinstance(value, str):
        if value.startswith(("/Date(", "\\/Date(")):
            try:
                return parse_dotnet_date(value)
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        if _looks_like_entity(value):
            return ENTITY_SCHEMA.load(value)
        if _looks_like_reference(value):
            return REFERENCE_SCHEMA.load(value)
        return {key: convert_sdk_value(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, dict) and "key" in item for item in value):
            return {item["key"]: convert_sdk_value(item.get("value")) for item in value}
        return [convert_sdk_value(item) for item in value]
    return value


def _load_entity(value: Any) -> Entity:
    if not isinstance(value, dict):
        raise ValidationError("Must be an entity object.")
    return ENTITY_SCHEMA.load(value)


def _load_parameter(key: str, value: Any) -> Any:
    """``Target`` is an Entity on Create/Update and an EntityReference on Delete."""
    if key == "Target" and isinstance(value, dict):
        if _looks_like_entity(value):
            return ENTITY_SCHEMA.load(value)
        return REFERENCE_SCHEMA.load(value)
    return convert_sdk_value(value)


# --- fields -----------------------------------------------------------------


class Guid(fields.Field):
    """A GUID string, returned lower case without braces."""

    default_error_messages = {"invalid": "Not a valid GUID."}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        try:
            return normalize_guid(value)
        except (ValueError, AttributeError):
            raise self.make_error("invalid") from None


class DotNetDate(fields.Field):
    """A ``/Date(ms[+-hhmm])/`` value (ISO 8601 is accepted too) as an aware datetime."""

    default_error_messages = {"invalid": "Not a valid /Date(milliseconds)/ value."}

    def _deserialize(self, value, attr, data, **kwargs) -> dt.datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_dotnet_date(value)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class KeyValueMap(fields.Field):
    """``[{"key": k, "value": v}, ...]`` → ``{k: loader(k, v)}``; ``null`` or missing → ``{}``."""

    default_error_messages = {
        "invalid": "Must be a list of {{key, value}} objects.",
        "invalid_item": "Must be an object with a string key and a value.",
    }

    def __init__(self, loader: Callable[[str, Any], Any] | None = None, **kwargs) -> None:
        kwargs.setdefault("load_default", dict)
        super().__init__(**kwargs)
        self.loader = loader or (lambda _key, value: convert_sdk_value(value))

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is None:
            return {}
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> dict[str, Any]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        result: dict[str, Any] = {}
        errors: dict[Any, Any] = {}
        for index, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                errors[index] = [self.error_messages["invalid_item"]]
                continue
            try:
                result[item["key"]] = self.loader(item["key"], item.get("value"))
            except ValidationError as exc:
                errors[item["key"]] = exc.messages
        if errors:
            raise ValidationError(errors)
        return result


def _optional(field_cls: type[fields.Field], data_key: str, **kwargs) -> fields.Field:
    return field_cls(data_key=data_key, load_default=None, allow_none=True, **kwargs)


# --- schemas ------------------------------------------------------------------


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class EntityReferenceSchema(_Lenient):
    logical_name = _optional(fields.String, "LogicalName")
    id = _optional(Guid, "Id")
    name = _optional(fields.String, "Name")
    key_attributes = KeyValueMap(data_key="KeyAttributes")

    @post_load
    def make_reference(self, data: dict[str, Any], **_kwargs) -> EntityReference:
        return EntityReference(**data)


class EntitySchema(_Lenient):
    logical_name = _optional(fields.String, "LogicalName")
    id = _optional(Guid, "Id")
    attributes = KeyValueMap(data_key="Attributes")
    formatted_values = KeyValueMap(data_key="FormattedValues")
    key_attributes = KeyValueMap(data_key="KeyAttributes")
    row_version = _optional(fields.Raw, "RowVersion")

    @post_load
    def make_entity(self, data: dict[str, Any], **_kwargs) -> Entity:
        if data["row_version"] is not None:
            data["row_version"] = str(data["row_version"])
        return Entity(**data)


ENTITY_SCHEMA = EntitySchema()
REFERENCE_SCHEMA = EntityReferenceSchema()


class _ContextFields(_Lenient):
    """Every context key the bridge reads; the required ones are added by subclasses."""

    organization_name = _optional(fields.String, "OrganizationName")
    business_unit_id = _optional(Guid, "BusinessUnitId")
    correlation_id = _optional(Guid, "CorrelationId")
    request_id = _optional(Guid, "RequestId")
    user_id = _optional(Guid, "UserId")
    initiating_user_id = _optional(Guid, "InitiatingUserId")
    user_aad_object_id = _optional(Guid, "UserAzureActiveDirectoryObjectId")
    initiating_user_aad_object_id = _optional(Guid, "InitiatingUserAzureActiveDirectoryObjectId")
    initiating_user_agent = _optional(fields.String, "InitiatingUserAgent")
    depth = fields.Integer(data_key="Depth", load_default=1, allow_none=True)
    mode = _optional(fields.Integer, "Mode")
    stage = _optional(fields.Integer, "Stage")
    isolation_mode = _optional(fields.Integer, "IsolationMode")
    is_executing_offline = _optional(fields.Boolean, "IsExecutingOffline")
    is_in_transaction = _optional(fields.Boolean, "IsInTransaction")
    is_offline_playback = _optional(fields.Boolean, "IsOfflinePlayback")
    operation_created_on = _optional(DotNetDate, "OperationCreatedOn")
    secondary_entity_name = _optional(fields.String, "SecondaryEntityName")
    owning_extension = _optional(fields.Nested, "OwningExtension", nested=EntityReferenceSchema)
    input_parameters = KeyValueMap(_load_parameter, data_key="InputParameters")
    output_parameters = KeyValueMap(_load_parameter, data_key="OutputParameters")
    shared_variables = KeyValueMap(data_key="SharedVariables")
    pre_entity_images = KeyValueMap(lambda _k, v: _load_entity(v), data_key="PreEntityImages")
    post_entity_images = KeyValueMap(lambda _k, v: _load_entity(v), data_key="PostEntityImages")


class ParentContextSchema(_ContextFields):
    """``ParentContext``: the same shape, but nothing in it is required (we only read tags)."""

    message_name = _optional(fields.String, "MessageName")
    primary_entity_name = _optional(fields.String, "PrimaryEntityName")
    primary_entity_id = _optional(Guid, "PrimaryEntityId")
    organization_id = _optional(Guid, "OrganizationId")
    operation_id = _optional(Guid, "OperationId")
    parent_context = _optional(fields.Nested, "ParentContext", nested=lambda: ParentContextSchema())


class RemoteExecutionContextSchema(_ContextFields):
    """The whole webhook body, loaded to a dict with snake_case keys.

    Only what identifies the event is required, because payloads over 256 KB
    arrive without ``InputParameters``, images and ``ParentContext``.
    """

    message_name = fields.String(
        data_key="MessageName", required=True, validate=validate.Length(min=1)
    )
    primary_entity_name = fields.String(
        data_key="PrimaryEntityName", required=True, validate=validate.Length(min=1)
    )
    primary_entity_id = Guid(data_key="PrimaryEntityId", required=True)
    organization_id = Guid(data_key="OrganizationId", required=True)
    operation_id = Guid(data_key="OperationId", required=True)
    parent_context = _optional(fields.Nested, "ParentContext", nested=ParentContextSchema)


@dataclass(frozen=True)
class WebhookEvent:
    """What the webhook view and the sync job need to know about one delivery."""

    org_id: str
    entity: str
    record_id: str
    message: str
    operation_id: str
    step_id: str | None
    user_id: str | None
    initiating_user_id: str | None
    depth: int
    tag: str | None
    changed_attributes: frozenset[str]
    size_exceeded: bool

    def with_size_exceeded(self) -> WebhookEvent:
        return dataclasses.replace(self, size_exceeded=True)


def _find_tag(context: Mapping[str, Any] | None) -> str | None:
    """The ``tag`` shared variable, from this context or the nearest parent that has one.

    An async post-operation step may see the caller's ``?tag=`` only on its
    parent (main-operation) context, so the chain is walked.
    """
    while context:
        tag = context.get("shared_variables", {}).get("tag")
        if isinstance(tag, str) and tag:
            return tag
        context = context.get("parent_context")
    return None


def _record_id(data: Mapping[str, Any]) -> str:
    """``PrimaryEntityId``, or for a pre-operation Create (nil id) the new id if present."""
    record_id = data["primary_entity_id"]
    if record_id != NIL_GUID:
        return record_id
    created = data["output_parameters"].get("id")
    target = data["input_parameters"].get("Target")
    for candidate in (created, getattr(target, "id", None)):
        try:
            guid = normalize_guid(candidate)
        except (ValueError, AttributeError):
            continue
        if guid != NIL_GUID:
            return guid
    return record_id


class WebhookEventSchema(RemoteExecutionContextSchema):
    """Loads a webhook body straight into a ``WebhookEvent``.

    It is the hot path, so it skips what the event does not use: the entity
    images, and everything in ``ParentContext`` except where a ``tag`` can hide.
    """

    class Meta:
        unknown = EXCLUDE
        exclude = ("pre_entity_images", "post_entity_images")

    parent_context = _optional(
        fields.Nested,
        "ParentContext",
        nested=ParentContextSchema,
        only=("shared_variables", "parent_context"),
    )

    @post_load(pass_original=True)
    def make_event(
        self, data: dict[str, Any], original: Mapping[str, Any], **_kwargs
    ) -> WebhookEvent:
        target = data["input_parameters"].get("Target")
        owning = data["owning_extension"]
        return WebhookEvent(
            org_id=data["organization_id"],
            entity=data["primary_entity_name"].strip().lower(),
            record_id=_record_id(data),
            message=data["message_name"].strip(),
            operation_id=data["operation_id"],
            step_id=owning.id if owning is not None else None,
            user_id=data["user_id"],
            initiating_user_id=data["initiating_user_id"],
            depth=data["depth"] if data["depth"] is not None else 1,
            tag=_find_tag(data),
            changed_attributes=(
                frozenset(target.attributes) if isinstance(target, Entity) else frozenset()
            ),
            size_exceeded="InputParameters" not in original,
        )


_EVENT_SCHEMA = WebhookEventSchema()


def load_webhook_event(payload: Any, *, size_exceeded_header: bool = False) -> WebhookEvent:
    """Validate a parsed webhook body; raises ``marshmallow.ValidationError`` with field messages.

    ``size_exceeded_header`` is the ``x-ms-dynamics-msg-size-exceeded`` header:
    it is authoritative even if the body still happens to hold parameters.
    """
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The body must be a JSON object."]})
    event = _EVENT_SCHEMA.load(payload)
    return event.with_size_exceeded() if size_exceeded_header else event
