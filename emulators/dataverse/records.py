"""Conversion between Web API JSON and stored rows, with Dataverse's validation messages."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from . import errors
from .errors import ApiError
from .metadata import (
    BIGINT,
    BOOLEAN,
    CHOICE_TYPES,
    DATETIME,
    DOUBLE,
    ENTITYNAME,
    GUID,
    INTEGER,
    MEMO,
    MONEY,
    STRING,
    Column,
    Table,
)
from .odata_filter import parse_datetime
from .store import Ref, Row

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_EDM = {
    STRING: "Edm.String",
    MEMO: "Edm.String",
    INTEGER: "Edm.Int32",
    BIGINT: "Edm.Int64",
    DOUBLE: "Edm.Double",
    MONEY: "Edm.Decimal",
    BOOLEAN: "Edm.Boolean",
    DATETIME: "Edm.DateTimeOffset",
    GUID: "Edm.Guid",
    ENTITYNAME: "Edm.String",
}


def format_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_literal(value: Any, col: Column) -> ApiError:
    edm = _EDM.get(col.type, "Edm.Int32")
    return ApiError(
        400,
        errors.QUERY_ERROR,
        f"Cannot convert the literal '{value}' to the expected type '{edm}'.",
    )


def convert_value(table: Table, col: Column, value: Any) -> Any:
    """Validate one JSON value for ``col`` and return the stored form."""
    if value is None:
        return None
    if col.type in (STRING, MEMO, ENTITYNAME):
        if not isinstance(value, str):
            raise _bad_literal(value, col)
        if col.max_length is not None and len(value) > col.max_length:
            raise ApiError(
                400,
                errors.VALIDATION,
                f"A validation error occurred. The length of the '{col.name}' attribute "
                f"of the '{table.logical_name}' entity exceeded the maximum allowed "
                f"length of '{col.max_length}'.",
            )
        return value
    if col.type in (INTEGER, BIGINT):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_literal(value, col)
        return value
    if col.type in (DOUBLE, MONEY):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_literal(value, col)
        return float(value)
    if col.type == BOOLEAN:
        if not isinstance(value, bool):
            raise _bad_literal(value, col)
        return value
    if col.type == DATETIME:
        try:
            return parse_datetime(str(value)).replace(microsecond=0)
        except ValueError:
            raise _bad_literal(value, col) from None
    if col.type == GUID:
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise _bad_literal(value, col)
        return value.lower()
    if col.type in CHOICE_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_literal(value, col)
        if col.options and col.label(value) is None:
            accepted = ",".join(str(v) for v, _ in col.options)
            raise ApiError(
                400,
                errors.OUT_OF_RANGE,
                f"A validation error occurred. The value {value} of '{col.name}' on "
                f"record of type '{table.logical_name}' is outside the valid range. "
                f"Accepted Values: {accepted}",
            )
        return value
    raise _bad_literal(value, col)


def from_json(
    table: Table, body: dict[str, Any], resolve_ref: Callable[[str], Ref]
) -> dict[str, Any]:
    """Request body -> stored attributes, in request order. System columns are ignored."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            nav = key[: -len("@odata.bind")]
            found = table.nav_property(nav)
            if found is None:
                raise ApiError(
                    400,
                    errors.QUERY_ERROR,
                    f"An undeclared property '{nav}' which only has property "
                    "annotations in the payload but no property value was found in "
                    "the payload. In OData, only declared navigation properties and "
                    "declared named streams can be represented as properties without "
                    "values.",
                )
            col, target = found
            if value is None:
                out[col.name] = None
                continue
            ref = resolve_ref(str(value))
            if ref.entity not in col.targets or (target and ref.entity != target):
                raise ApiError(
                    400,
                    errors.QUERY_ERROR,
                    f"The entity with a name = '{ref.entity}' cannot be bound to "
                    f"navigation property '{nav}'.",
                )
            out[col.name] = ref
            continue
        if key.startswith("@") or "@" in key:
            continue  # instance annotations such as @odata.type
        if key.startswith("_") and key.endswith("_value") and key[1:-6] in table.columns:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                "CRM do not support direct update of Entity Reference properties, "
                "Use Navigation properties instead.",
            )
        col = table.columns.get(key)
        if col is None or col.is_lookup:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                f"The property '{key}' does not exist on type '{table.odata_type}'. "
                "Make sure to only use property names that are defined by the type.",
            )
        if col.system and col.name != table.primary_id:
            continue
        out[col.name] = convert_value(table, col, value)
    return out


def formatted_value(col: Column, value: Any, names: Callable[[Ref], str | None]) -> str | None:
    if value is None:
        return None
    if col.type in CHOICE_TYPES:
        return col.label(value)
    if col.type == BOOLEAN:
        return "Yes" if value else "No"
    if col.type == DATETIME:
        return value.astimezone(dt.UTC).strftime("%-m/%-d/%Y %-I:%M %p")
    if col.type == MONEY:
        return f"${value:,.2f}"
    if col.type in (INTEGER, BIGINT):
        return f"{value:,}"
    if isinstance(value, Ref):
        return names(value)
    return None


def json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, Ref):
        return value.id
    return value


def readable_columns(table: Table) -> list[Column]:
    return [c for c in table.columns.values() if c.readable]


def to_json(
    table: Table,
    row: Row,
    select: list[Column] | None = None,
    annotations: bool = False,
    names: Callable[[Ref], str | None] = lambda ref: None,
) -> dict[str, Any]:
    """A stored row as the Web API returns it; the primary key is always included."""
    cols = list(select) if select else readable_columns(table)
    pk = table.columns[table.primary_id]
    if pk not in cols:
        cols.append(pk)
    out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber", 0)}"'}
    for col in cols:
        value = row.get(col.name)
        if annotations:
            label = formatted_value(col, value, names)
            if label is not None:
                out[f"{col.web_name}@OData.Community.Display.V1.FormattedValue"] = label
            if col.is_lookup and isinstance(value, Ref):
                nav = next(
                    (n for n, t in col.nav_properties().items() if t == value.entity), col.name
                )
                out[f"{col.web_name}@Microsoft.Dynamics.CRM.associatednavigationproperty"] = nav
                out[f"{col.web_name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = value.entity
        out[col.web_name] = json_value(value) if col.readable else None
    return out


def filter_value(row: Row, table: Table, web_name: str) -> Any:
    """Value of ``web_name`` for $filter / $orderby (lookups compare by id)."""
    col = table.column_by_web_name(web_name)
    if col is None:
        return None
    value = row.get(col.name)
    return value.id if isinstance(value, Ref) else value
