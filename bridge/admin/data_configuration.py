"""Data Configuration: what syncs for leads and contacts, and how fields map.

Field metadata comes from both sides and is cached briefly in Redis:

* Dataverse: ``EntityDefinitions(LogicalName='<entity>')/Attributes`` (type, required level,
  custom or not, display name), and the option sets of choice columns through the
  ``PicklistAttributeMetadata`` cast with ``$expand=OptionSet``;
* ActiveCampaign: ``GET /fields`` with its ``fieldOptions`` side-load, plus the four standard
  contact fields (email, firstName, lastName, phone).

Compatibility (``COMPATIBLE``) follows the field-type table of ActiveCampaign's CRM
integrations (facts §11): text to text input / text area / dropdown / hidden, numbers to number
/ text / dropdown / hidden, dates to date / date-time, yes-no to checkbox / dropdown / radio,
choices to dropdown / radio / text / hidden (values mapped option by option), multi-select to
list box / checkboxes. A custom ActiveCampaign field maps only to a custom Dynamics column;
the standard fields map to the standard text columns.

Saving validates everything server-side, with the sync engine's own parsers
(``Criteria.from_config``, ``parse_mappings``) plus the rules the pages show per row: a
required Dynamics column left unmapped, a type mismatch, a custom field mapped to a standard
column, a duplicate target, an unknown option. Errors come back as 400 with ``fields`` shaped
like marshmallow's: ``{"criteria": {"0": {"value": [...]}}, "field_mappings": {"2":
{"dynamics_column": [...]}}}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bridge.clients import (
    ActiveCampaignError,
    DataverseError,
    activecampaign_client,
    dataverse_client,
)
from bridge.criteria import Criteria, CriteriaError
from bridge.errors import ApiError
from bridge.fieldmap import (
    STANDARD_AC_FIELDS,
    STANDARD_MAPPINGS,
    MappingError,
    forget_schema,
    parse_mappings,
)
from bridge.models import Connection, EntityConfig
from bridge.runtime import Runtime
from bridge.schemas.admin import ENTITIES

log = logging.getLogger(__name__)

METADATA_CACHE_SECONDS = 120
MULTI_SELECT = "MultiSelectPicklist"
TEXT = ("String", "Memo")
NUMBERS = ("Integer", "BigInt", "Double", "Decimal", "Money")
CHOICES = ("Picklist", "State", "Status")
SUPPORTED_TYPES = (*TEXT, *NUMBERS, "DateTime", "Boolean", *CHOICES, MULTI_SELECT)
# Columns the bridge itself writes: never offered for mapping or criteria.
BRIDGE_COLUMNS = frozenset({"ac_activecampaigncontactid", "ac_lastsyncedon", "ac_syncstatus"})

COMPATIBLE: dict[str, tuple[str, ...]] = {
    "String": ("text", "textarea", "hidden", "dropdown", "radio"),
    "Memo": ("textarea", "text", "hidden"),
    **{t: ("number", "text", "hidden", "dropdown") for t in NUMBERS},
    "DateTime": ("date", "datetime"),
    "Boolean": ("checkbox", "dropdown", "radio"),
    **{t: ("dropdown", "radio", "text", "hidden") for t in CHOICES},
    MULTI_SELECT: ("listbox", "checkbox"),
}
OPTION_AC_TYPES = frozenset({"dropdown", "radio", "listbox", "checkbox"})

_TEXT_OPS = ["eq", "ne", "contains", "begins_with", "is_empty", "is_not_empty"]
_NUMBER_OPS = ["eq", "ne", "gt", "lt", "is_empty", "is_not_empty"]
OPERATORS_BY_TYPE: dict[str, list[str]] = {
    **{t: _TEXT_OPS for t in TEXT},
    **{t: _NUMBER_OPS for t in NUMBERS},
    "DateTime": ["on", "before", "after", "gt", "lt", "is_empty", "is_not_empty"],
    "Boolean": ["eq", "ne"],
    **{t: ["eq", "ne", "is_empty", "is_not_empty"] for t in CHOICES},
    MULTI_SELECT: ["is_empty", "is_not_empty"],
}

STANDARD_AC = [
    {"id": "email", "title": "Email", "type": "text", "standard": True, "options": []},
    {"id": "firstName", "title": "First name", "type": "text", "standard": True, "options": []},
    {"id": "lastName", "title": "Last name", "type": "text", "standard": True, "options": []},
    {"id": "phone", "title": "Phone", "type": "text", "standard": True, "options": []},
]
LABELS = {"is_empty": "is empty", "is_not_empty": "is not empty"}


def check_entity(entity: str) -> str:
    if entity not in ENTITIES:
        raise ApiError(404, "unknown_entity", "only lead and contact are configured here")
    return entity


def _label(metadata: dict[str, Any]) -> str:
    label = ((metadata.get("DisplayName") or {}).get("UserLocalizedLabel") or {}).get("Label")
    return str(label or metadata.get("LogicalName") or "")


# --- metadata --------------------------------------------------------------------------------


def _dynamics_columns(dv, entity: str) -> list[dict[str, Any]]:
    base = f"EntityDefinitions(LogicalName='{entity}')/Attributes"
    rows = dv.request(
        "GET",
        base,
        params={
            "$select": "LogicalName,AttributeType,AttributeTypeName,RequiredLevel,"
            "IsCustomAttribute,DisplayName,IsValidForUpdate,IsValidForRead,MaxLength"
        },
    ).json()["value"]
    options: dict[str, list[dict[str, str]]] = {}
    for cast in ("PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata"):
        choice_rows = dv.request(
            "GET",
            f"{base}/Microsoft.Dynamics.CRM.{cast}",
            params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
        ).json()["value"]
        for row in choice_rows:
            options[row["LogicalName"]] = [
                {"value": str(o["Value"]), "label": _label({"DisplayName": o.get("Label")})}
                for o in (row.get("OptionSet") or {}).get("Options") or []
            ]
    columns = []
    for row in rows:
        name = row["LogicalName"]
        ctype = str(row.get("AttributeType") or "")
        type_name = str((row.get("AttributeTypeName") or {}).get("Value") or "")
        if type_name == "MultiSelectPicklistType":
            ctype = MULTI_SELECT
        if (
            ctype not in SUPPORTED_TYPES
            or name in BRIDGE_COLUMNS
            or row.get("IsValidForRead") is False
            or row.get("IsValidForUpdate") is False
        ):
            continue
        columns.append(
            {
                "name": name,
                "label": _label(row),
                "type": ctype,
                "required": (row.get("RequiredLevel") or {}).get("Value") == "ApplicationRequired",
                "custom": bool(row.get("IsCustomAttribute")),
                "options": options.get(name, []),
                "max_length": row.get("MaxLength"),
            }
        )
    return sorted(columns, key=lambda c: c["label"].casefold())


def _ac_fields(ac) -> list[dict[str, Any]]:
    fields: list[dict] = []
    options: dict[str, list[dict[str, str]]] = {}
    offset = 0
    while True:
        body = ac.get("fields", {"limit": 100, "offset": offset})
        page = body.get("fields") or []
        fields.extend(page)
        for option in body.get("fieldOptions") or []:
            options.setdefault(str(option.get("field")), []).append(
                {"value": str(option.get("value")), "label": str(option.get("label") or "")}
            )
        offset += len(page)
        try:
            total = int((body.get("meta") or {}).get("total") or 0)
        except ValueError:
            total = 0
        if not page or offset >= total:
            break
    custom = [
        {
            "id": str(f["id"]),
            "title": str(f.get("title") or ""),
            "type": str(f.get("type") or "text"),
            "standard": False,
            "options": options.get(str(f["id"]), []),
        }
        for f in fields
    ]
    return [*STANDARD_AC, *sorted(custom, key=lambda f: f["title"].casefold())]


def _compatible_columns(ac_field: dict, columns: list[dict]) -> list[str]:
    if ac_field["standard"]:
        return [c["name"] for c in columns if c["type"] == "String"]
    return [
        c["name"]
        for c in columns
        if c["custom"] and ac_field["type"] in COMPATIBLE.get(c["type"], ())
    ]


def _cache_key(connection_id: int, entity: str) -> str:
    return f"bridge:admin:fields:{connection_id}:{entity}"


def field_metadata(
    runtime: Runtime, connection_id: int, entity: str, refresh: bool = False
) -> dict[str, Any]:
    """Both sides' fields, compatibility (AC field → columns) and operators (column → ops)."""
    check_entity(entity)
    key = _cache_key(connection_id, entity)
    cached = None if refresh else runtime.redis.get(key)
    if cached:
        return json.loads(cached)
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        try:
            ac = activecampaign_client(runtime, connection)
        except LookupError:
            raise ApiError(400, "not_connected", "connect ActiveCampaign first") from None
        dv = dataverse_client(runtime, connection)
    try:
        columns = _dynamics_columns(dv, entity)
    except DataverseError as err:
        log.warning("attribute metadata of %s failed: %s", entity, err)
        raise ApiError(502, "dynamics_unavailable", "Dynamics did not answer; try again") from None
    try:
        ac_fields = _ac_fields(ac)
    except ActiveCampaignError as err:
        log.warning("ActiveCampaign fields failed: %s", err)
        raise ApiError(
            502, "activecampaign_unavailable", "ActiveCampaign did not answer; try again"
        ) from None
    body = {
        "entity": entity,
        "dynamics": columns,
        "activecampaign": ac_fields,
        "compatibility": {f["id"]: _compatible_columns(f, columns) for f in ac_fields},
        "operators": {c["name"]: OPERATORS_BY_TYPE[c["type"]] for c in columns},
        "standard_mappings": _standard_mappings(),
    }
    runtime.redis.set(key, json.dumps(body), ex=METADATA_CACHE_SECONDS)
    return body


def _standard_mappings() -> list[dict[str, Any]]:
    return [
        {"ac_field": m.ac_field, "dynamics_column": m.dynamics_column, "direction": m.direction,
         "option_map": {}}
        for m in STANDARD_MAPPINGS
    ]


# --- read / save -----------------------------------------------------------------------------


def read(runtime: Runtime, connection_id: int, entity: str) -> dict[str, Any]:
    check_entity(entity)
    with runtime.db.session() as session:
        config = (
            session.query(EntityConfig)
            .filter_by(connection_id=connection_id, entity=entity)
            .one_or_none()
        )
        if config is None:
            return {"entity": entity, "enabled": True, "mode": "all", "criteria": [],
                    "field_mappings": _standard_mappings()}
        return {
            "entity": entity,
            "enabled": config.enabled,
            "mode": config.mode,
            "criteria": list(config.criteria or []),
            "field_mappings": list(config.field_mappings or []) or _standard_mappings(),
        }


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}

    def add(self, group: str, index: int | None, name: str, message: str) -> None:
        target = self.fields.setdefault(group, {})
        if index is None:
            target.setdefault("_schema", []).append(message)
            return
        target.setdefault(str(index), {}).setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.fields:
            raise ApiError(
                400, "invalid_configuration", "Some settings cannot work; see the marked rows.",
                fields=self.fields,
            )


def _criterion_value(column: dict, value: Any) -> Any:
    """The value as the column's type (a number for numbers and choices, a bool for yes/no)."""
    ctype = column["type"]
    if value is None or value == "":
        return value
    if ctype in CHOICES:
        text = str(value).strip()
        if text not in {o["value"] for o in column["options"]}:
            raise CriteriaError(f"{value!r} is not an option of {column['label']}")
        return int(text)
    if ctype in NUMBERS:
        if isinstance(value, bool):
            raise CriteriaError(f"{column['label']} needs a number")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise CriteriaError(f"{column['label']} needs a number") from None
        return int(number) if number.is_integer() and ctype in ("Integer", "BigInt") else number
    if ctype == "Boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            raise CriteriaError(f"{column['label']} is yes or no")
        return text == "true"
    return value


def _check_criteria(body: dict, columns: dict[str, dict], errors: _Errors) -> list[dict]:
    cleaned = []
    if body["mode"] == "criteria" and not body["criteria"]:
        errors.add("criteria", None, "", "Add at least one criterion, or choose all records.")
    for index, item in enumerate(body["criteria"]):
        column = columns.get(item["field"])
        if column is None:
            errors.add("criteria", index, "field", f"{item['field']} is not a column you can use")
            continue
        if item["operator"] not in OPERATORS_BY_TYPE[column["type"]]:
            errors.add(
                "criteria", index, "operator",
                f"'{LABELS.get(item['operator'], item['operator'])}' does not apply to "
                f"{column['label']}",
            )
            continue
        try:
            value = _criterion_value(column, item.get("value"))
            condition = Criteria.from_config(
                [{"field": item["field"], "operator": item["operator"], "value": value}]
            )
        except CriteriaError as err:
            errors.add("criteria", index, "value", str(err))
            continue
        cleaned.extend(condition.as_config())
    return cleaned


def _check_mappings(
    body: dict, columns: dict[str, dict], ac_fields: dict[str, dict], errors: _Errors
) -> list[dict]:
    cleaned = []
    targets: dict[str, int] = {}
    sources: dict[str, int] = {}
    for index, item in enumerate(body["field_mappings"]):
        ac_id, column_name = item["ac_field"], item["dynamics_column"]
        ac_field, column = ac_fields.get(ac_id), columns.get(column_name)
        if ac_field is None:
            errors.add("field_mappings", index, "ac_field",
                       f"{ac_id} is not a field of this ActiveCampaign account")
            continue
        if column is None:
            errors.add("field_mappings", index, "dynamics_column",
                       f"{column_name} is not a column you can map")
            continue
        if not ac_field["standard"] and not column["custom"]:
            errors.add(
                "field_mappings", index, "dynamics_column",
                f"{ac_field['title']} is a custom field: map it to a custom Dynamics column, "
                f"not the standard {column['label']}",
            )
        elif ac_field["standard"] and column["type"] != "String":
            errors.add(
                "field_mappings", index, "dynamics_column",
                f"Type mismatch: {ac_field['title']} is text and {column['label']} is "
                f"{column['type']}",
            )
        elif not ac_field["standard"] and ac_field["type"] not in COMPATIBLE[column["type"]]:
            errors.add(
                "field_mappings", index, "dynamics_column",
                f"Type mismatch: {ac_field['title']} is a {ac_field['type']} field and "
                f"{column['label']} is {column['type']}",
            )
        if column_name in targets:
            errors.add(
                "field_mappings", index, "dynamics_column",
                f"Duplicate target: {column['label']} is already mapped in row "
                f"{targets[column_name] + 1}",
            )
        else:
            targets[column_name] = index
        if ac_id in sources:
            errors.add("field_mappings", index, "ac_field",
                       f"{ac_field['title']} is already mapped in row {sources[ac_id] + 1}")
        else:
            sources[ac_id] = index
        option_map = {str(k): str(v) for k, v in (item.get("option_map") or {}).items()}
        dyn_values = {o["value"] for o in column["options"]}
        if column["type"] == "Boolean":
            dyn_values = {"true", "false"}
        ac_values = {o["value"] for o in ac_field["options"]}
        for key, value in option_map.items():
            if key not in dyn_values:
                errors.add("field_mappings", index, "option_map",
                           f"{key} is not an option of {column['label']}")
            elif ac_values and value not in ac_values:
                errors.add("field_mappings", index, "option_map",
                           f"{value!r} is not an option of {ac_field['title']}")
        if (
            column["type"] in CHOICES
            and ac_field["type"] in OPTION_AC_TYPES
            and not option_map
        ):
            errors.add("field_mappings", index, "option_map",
                       f"Map the options of {column['label']} to {ac_field['title']}'s options")
        cleaned.append({**item, "option_map": option_map})
    mapped = {m["dynamics_column"] for m in body["field_mappings"]}
    for column in columns.values():
        if column["required"] and column["name"] not in mapped:
            errors.add(
                "field_mappings", None, "",
                f"{column['label']} ({column['name']}) is required in Dynamics: map an "
                "ActiveCampaign field to it.",
            )
    if "email" not in sources:
        errors.add("field_mappings", None, "", "Email must stay mapped: it identifies the contact.")
    if not errors.fields.get("field_mappings"):
        try:
            parse_mappings(cleaned)
        except MappingError as err:
            errors.add("field_mappings", None, "", str(err))
    return cleaned


def save(runtime: Runtime, connection_id: int, entity: str, body: dict) -> dict[str, Any]:
    check_entity(entity)
    metadata = field_metadata(runtime, connection_id, entity, refresh=True)  # never stale
    columns = {c["name"]: c for c in metadata["dynamics"]}
    ac_fields = {f["id"]: f for f in metadata["activecampaign"]}
    errors = _Errors()
    criteria = _check_criteria(body, columns, errors)
    mappings = _check_mappings(body, columns, ac_fields, errors)
    errors.raise_if_any()
    with runtime.db.session() as session:
        config = (
            session.query(EntityConfig)
            .filter_by(connection_id=connection_id, entity=entity)
            .one_or_none()
        )
        if config is None:
            config = EntityConfig(connection_id=connection_id, entity=entity)
            session.add(config)
        config.enabled = body["enabled"]
        config.mode = body["mode"]
        config.criteria = criteria
        config.field_mappings = mappings
    forget_schema(runtime.redis, connection_id)
    return read(runtime, connection_id, entity)


__all__ = ["STANDARD_AC_FIELDS", "field_metadata", "read", "save"]
