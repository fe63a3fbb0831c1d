"""The mapping engine: Dynamics columns ⇄ ActiveCampaign contact fields, with type conversion.

Every sync path (real-time push, initial sync, delta sync, inbound) builds a
``Mapper`` for (connection, table) and calls it, so the same row always gives
the same ``ContactPayload`` and therefore the same ledger hash.

A mapping is ``EntityConfig.field_mappings``' shape: ``{ac_field,
dynamics_column, direction, option_map}``. ``ac_field`` is one of the standard
fields (``email``, ``firstName``, ``lastName``, ``phone``) or a custom field id.
Types come from a ``Schema``: Dataverse attribute metadata (``AttributeType``,
``MaxLength``) and ActiveCampaign field types (``GET /fields``), cached in Redis.

Conversions (Dynamics → ActiveCampaign / back):

* text, memo: as is / refused when longer than the column (never truncated);
* whole, decimal, money: canonical number text (``1500``, ``2.25``) / parsed;
* dates: a date-only value (``2024-01-31``) stays a date; a date-time goes to
  an AC ``date`` field as its UTC day and to ``datetime`` as UTC ISO-8601;
* two-option ↔ checkbox ``||true||`` (or ``option_map`` {"true": .., "false": ..});
* choice ↔ dropdown/radio through ``option_map`` {"<dynamics value>": "<AC value>"};
* multi-select choice (``"1,3"``) ↔ listbox/checkbox ``||a||b||``;
* lookups go to ActiveCampaign as the referenced row's name (read-only).

A value that cannot be converted (too long, an option without a mapping) is
left out of the write and reported as a ``problem`` for that record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.criteria import parse_datetime
from bridge.mapping import (
    AC_CONTACT_ID_COLUMN,
    ContactPayload,
    _text,
    entity_info,
    normalize_email,
)

log = logging.getLogger(__name__)

STANDARD_AC_FIELDS = ("email", "firstName", "lastName", "phone")
DIRECTIONS = ("both", "to_activecampaign", "to_dynamics")
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
SCHEMA_CACHE_SECONDS = 600

TEXT_TYPES = frozenset({"String", "Memo"})
INTEGER_TYPES = frozenset({"Integer", "BigInt"})
DECIMAL_TYPES = frozenset({"Double", "Decimal", "Money"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
MULTI_SELECT = "MultiSelectPicklist"
AC_MULTI_TYPES = frozenset({"checkbox", "listbox"})
AC_OPTION_TYPES = frozenset({"dropdown", "radio"})


class MappingError(ValueError):
    """A field mapping configuration that cannot work."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # AttributeType, or "MultiSelectPicklist"
    max_length: int | None = None


@dataclass(frozen=True)
class AcFieldInfo:
    id: str
    type: str  # text, textarea, number, date, datetime, checkbox, listbox, dropdown, radio, hidden
    title: str = ""


@dataclass(frozen=True)
class Schema:
    columns: Mapping[str, ColumnInfo] = field(default_factory=dict)
    ac_fields: Mapping[str, AcFieldInfo] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": {k: [v.type, v.max_length] for k, v in self.columns.items()},
                "ac_fields": {k: [v.type, v.title] for k, v in self.ac_fields.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        data = json.loads(text)
        return cls(
            {k: ColumnInfo(k, t, n) for k, (t, n) in data["columns"].items()},
            {k: AcFieldInfo(k, t, title) for k, (t, title) in data["ac_fields"].items()},
        )


@dataclass(frozen=True)
class FieldMapping:
    ac_field: str
    dynamics_column: str
    direction: str = "both"
    option_map: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> FieldMapping:
        ac_field = str(item.get("ac_field") or "").strip()
        column = str(item.get("dynamics_column") or "").strip()
        direction = str(item.get("direction") or "both")
        if not ac_field or not column:
            raise MappingError("a field mapping needs ac_field and dynamics_column")
        if ac_field not in STANDARD_AC_FIELDS and not ac_field.isdigit():
            raise MappingError(
                f"{ac_field!r} is neither a standard field ({', '.join(STANDARD_AC_FIELDS)}) "
                "nor an ActiveCampaign custom field id"
            )
        if direction not in DIRECTIONS:
            raise MappingError(f"direction must be one of {', '.join(DIRECTIONS)}")
        option_map = item.get("option_map") or {}
        if not isinstance(option_map, Mapping):
            raise MappingError("option_map must be an object")
        return cls(ac_field, column, direction, {str(k): str(v) for k, v in option_map.items()})

    @property
    def to_activecampaign(self) -> bool:
        return self.direction in ("both", "to_activecampaign")

    @property
    def to_dynamics(self) -> bool:
        return self.direction in ("both", "to_dynamics")


STANDARD_MAPPINGS = (
    FieldMapping("email", "emailaddress1"),
    FieldMapping("firstName", "firstname"),
    FieldMapping("lastName", "lastname"),
    FieldMapping("phone", "telephone1"),
)


@dataclass(frozen=True)
class Mapped:
    """A row mapped to ActiveCampaign, with the values that could not be carried over."""

    payload: ContactPayload
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundChange:
    """An ActiveCampaign contact mapped to a Dataverse update body."""

    body: dict[str, Any]
    problems: tuple[str, ...] = ()


# --- value conversion -----------------------------------------------------------------


class Unconvertible(ValueError):
    pass


def number_text(value: Any) -> str:
    """Canonical decimal text: 1500.0 → "1500", 2.250 → "2.25"."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Unconvertible(f"{value!r} is not a number") from None
    if number == number.to_integral_value():
        return str(number.quantize(Decimal(1)))
    return format(number.normalize(), "f")


def split_multi(value: str) -> list[str]:
    """``||a||b||`` (or a plain single value) → ["a", "b"]."""
    return [part for part in str(value).split("||") if part != ""]


def join_multi(values: Iterable[str]) -> str:
    values = list(values)
    return "||" + "||".join(values) + "||" if values else ""


def _bool_from_text(value: str, option_map: Mapping[str, str]) -> bool:
    reverse = {v.casefold(): k for k, v in option_map.items()}
    parts = split_multi(value)
    text = (parts[0] if len(parts) == 1 else value).strip().casefold()
    if text in reverse:
        text = reverse[text].casefold()
    if text in ("true", "1", "yes", "on", "y"):
        return True
    if text in ("false", "0", "no", "off", "n", ""):
        return False
    raise Unconvertible(f"{value!r} is not yes/no")


def _option_out(value: Any, option_map: Mapping[str, str], column: str) -> str:
    key = str(value)
    if option_map:
        if key not in option_map:
            raise Unconvertible(f"option {key} of {column} has no ActiveCampaign value mapped")
        return option_map[key]
    return key


def _option_in(value: str, option_map: Mapping[str, str], column: str) -> int:
    if option_map:
        reverse = {v.casefold(): k for k, v in option_map.items()}
        key = reverse.get(value.strip().casefold())
        if key is None:
            raise Unconvertible(f"{value!r} has no {column} option mapped")
        value = key
    try:
        return int(value)
    except ValueError:
        raise Unconvertible(f"{value!r} is not a {column} option") from None


def value_to_activecampaign(
    row: Mapping[str, Any], mapping: FieldMapping, column: ColumnInfo | None,
    ac_field: AcFieldInfo | None,
) -> str | None:
    """One Dynamics value as the text ActiveCampaign stores (None: empty)."""
    name = mapping.dynamics_column
    ctype = column.type if column else None
    ac_type = ac_field.type if ac_field else "text"
    if ctype in LOOKUP_TYPES:
        return _text(row.get(f"_{name}_value{FORMATTED}"))
    value = row.get(name)
    if value is None or value == "":
        return None
    if ctype == MULTI_SELECT or (ctype is None and ac_type in AC_MULTI_TYPES
                                 and isinstance(value, str) and "," in value):
        keys = [part.strip() for part in str(value).split(",") if part.strip()]
        return join_multi(_option_out(k, mapping.option_map, name) for k in keys)
    if isinstance(value, bool):
        key = "true" if value else "false"
        if mapping.option_map:
            if key not in mapping.option_map and not value:
                return ""  # an unchecked box needs no mapped value
            return _option_out(key, mapping.option_map, name)
        if ac_type in AC_MULTI_TYPES:
            return "||true||" if value else ""
        return key
    if ctype in CHOICE_TYPES or (mapping.option_map and isinstance(value, int)):
        text = _option_out(value, mapping.option_map, name)
        return join_multi([text]) if ac_type in AC_MULTI_TYPES else text
    if isinstance(value, int | float) or ctype in INTEGER_TYPES | DECIMAL_TYPES:
        return number_text(value)
    if isinstance(value, str) and (ctype == "DateTime" or ac_type in ("date", "datetime")):
        moment = parse_datetime(value)
        if moment is not None:
            date_only = "T" not in value
            if ac_type == "date" or (date_only and ac_type != "datetime"):
                return value[:10] if date_only else moment.date().isoformat()
            return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return _text(value)


def value_to_dynamics(
    value: Any, mapping: FieldMapping, column: ColumnInfo | None, ac_field: AcFieldInfo | None
) -> Any:
    """One ActiveCampaign value as the Dataverse Web API JSON value (raises Unconvertible)."""
    name = mapping.dynamics_column
    ctype = column.type if column else "String"
    ac_type = ac_field.type if ac_field else "text"
    text = "" if value is None else str(value)
    if ctype in LOOKUP_TYPES:
        raise Unconvertible(f"{name} is a lookup; it is only synced to ActiveCampaign")
    if text.strip() == "" or text == "||||":
        return False if ctype == "Boolean" else None
    if ctype == "Boolean":
        return _bool_from_text(text, mapping.option_map)
    if ctype == MULTI_SELECT:
        return ",".join(str(_option_in(p, mapping.option_map, name)) for p in split_multi(text))
    if ctype in CHOICE_TYPES:
        parts = split_multi(text)
        if len(parts) > 1:
            raise Unconvertible(f"{name} takes one option, ActiveCampaign has {len(parts)}")
        return _option_in(parts[0] if parts else text, mapping.option_map, name)
    if ctype in INTEGER_TYPES:
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            raise Unconvertible(f"{text!r} is not a whole number") from None
        if number != number.to_integral_value():
            raise Unconvertible(f"{text!r} is not a whole number")
        return int(number)
    if ctype in DECIMAL_TYPES:
        try:
            return float(Decimal(text.strip().replace(",", "")))
        except InvalidOperation:
            raise Unconvertible(f"{text!r} is not a number") from None
    if ctype == "DateTime":
        moment = parse_datetime(text.strip())
        if moment is None:
            raise Unconvertible(f"{text!r} is not a date")
        if ac_type == "date" or len(text.strip()) == 10:
            return text.strip()[:10]
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if ac_type in AC_MULTI_TYPES and text.startswith("||"):
        text = ", ".join(split_multi(text))
    if column and column.max_length is not None and len(text) > column.max_length:
        raise Unconvertible(
            f"{len(text)} characters do not fit {name} (at most {column.max_length})"
        )
    return text


# --- the mapper -----------------------------------------------------------------------


def parse_mappings(items: Iterable[Mapping[str, Any]] | None) -> tuple[FieldMapping, ...]:
    """The configured mappings, or the standard ones when none are configured.

    Email cannot be unmapped: without it ActiveCampaign cannot identify the contact.
    """
    mappings = tuple(FieldMapping.from_config(item) for item in (items or []))
    if not mappings:
        return STANDARD_MAPPINGS
    seen = [m.ac_field for m in mappings if m.to_activecampaign]
    duplicates = {f for f in seen if seen.count(f) > 1}
    if duplicates:
        raise MappingError(f"ActiveCampaign field(s) {', '.join(sorted(duplicates))} mapped twice")
    if not any(m.ac_field == "email" for m in mappings):
        mappings = (FieldMapping("email", "emailaddress1"), *mappings)
    return mappings


class Mapper:
    """Maps rows of one table of one connection, both ways."""

    def __init__(
        self, entity: str, mappings: Iterable[FieldMapping] | None = None,
        schema: Schema | None = None,
    ) -> None:
        self.entity = entity
        self.info = entity_info(entity)
        self.mappings = tuple(mappings) if mappings else STANDARD_MAPPINGS
        self.standard = self.mappings == STANDARD_MAPPINGS
        self.schema = schema or Schema()

    @classmethod
    def from_config(
        cls, entity: str, items: Iterable[Mapping[str, Any]] | None, schema: Schema | None = None
    ) -> Mapper:
        return cls(entity, parse_mappings(items), schema)

    @property
    def needs_schema(self) -> bool:
        return not self.standard

    @property
    def select(self) -> list[str]:
        """Columns to read for a push (mapped columns, the key, modifiedon, the write-back id)."""
        columns = {self.info.primary_key, "modifiedon", AC_CONTACT_ID_COLUMN}
        for mapping in self.mappings:
            column = self.schema.columns.get(mapping.dynamics_column)
            if column is not None and column.type in LOOKUP_TYPES:
                columns.add(f"_{mapping.dynamics_column}_value")
            else:
                columns.add(mapping.dynamics_column)
        if self.standard:
            columns.add("mobilephone")
        return sorted(columns)

    @property
    def needs_annotations(self) -> bool:
        return any(
            (c := self.schema.columns.get(m.dynamics_column)) is not None
            and c.type in LOOKUP_TYPES
            for m in self.mappings
        )

    def to_activecampaign(self, row: Mapping[str, Any]) -> Mapped:
        standard: dict[str, str | None] = {}
        custom: dict[str, str] = {}
        problems: list[str] = []
        for mapping in self.mappings:
            if not mapping.to_activecampaign:
                continue
            column = self.schema.columns.get(mapping.dynamics_column)
            ac_field = self.schema.ac_fields.get(mapping.ac_field)
            try:
                value = value_to_activecampaign(row, mapping, column, ac_field)
            except Unconvertible as exc:
                problems.append(f"{mapping.dynamics_column}: {exc}")
                continue
            if mapping.ac_field in STANDARD_AC_FIELDS:
                standard[mapping.ac_field] = value
            else:
                custom[mapping.ac_field] = "" if value is None else value
        phone = standard.get("phone")
        if self.standard and not phone:
            phone = _text(row.get("mobilephone"))
        payload = ContactPayload(
            email=normalize_email(standard.get("email")),
            first_name=_text(standard.get("firstName")),
            last_name=_text(standard.get("lastName")),
            phone=_text(phone),
            field_values=custom,
        )
        return Mapped(payload, tuple(problems))

    @property
    def email_column(self) -> str:
        return next(
            (m.dynamics_column for m in self.mappings if m.ac_field == "email"), "emailaddress1"
        )

    def dynamics_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row's values of the columns a pull may write (``to_dynamics``, not lookups).

        Stored in the ledger after every push and pull as the values both sides
        agreed on: the base that tells a one-sided change from a conflict.
        """
        values: dict[str, Any] = {}
        for mapping in self.mappings:
            column = self.schema.columns.get(mapping.dynamics_column)
            if not mapping.to_dynamics or (column is not None and column.type in LOOKUP_TYPES):
                continue
            values[mapping.dynamics_column] = row.get(mapping.dynamics_column)
        return values

    def same_value(self, column: str, left: Any, right: Any) -> bool:
        """Whether two Web API values of ``column`` mean the same (blank = None, email case)."""
        if left in (None, "") and right in (None, ""):
            return True
        if isinstance(left, str) and isinstance(right, str):
            if column == self.email_column:
                return left.strip().casefold() == right.strip().casefold()
            return left.strip() == right.strip()
        numbers = (int, float)
        if (isinstance(left, numbers) and isinstance(right, numbers)
                and not isinstance(left, bool) and not isinstance(right, bool)):
            return float(left) == float(right)
        return left == right

    def to_dynamics(
        self, contact: Mapping[str, Any], field_values: Mapping[str, Any]
    ) -> InboundChange:
        """The Dataverse update body for an ActiveCampaign contact (``to_dynamics`` mappings).

        ``contact`` is the v3 contact (email, firstName, lastName, phone);
        ``field_values`` maps custom field id → value. Fields the contact does
        not carry at all are left alone.
        """
        body: dict[str, Any] = {}
        problems: list[str] = []
        for mapping in self.mappings:
            if not mapping.to_dynamics:
                continue
            if mapping.ac_field in STANDARD_AC_FIELDS:
                if mapping.ac_field not in contact:
                    continue
                raw = contact.get(mapping.ac_field)
            else:
                if mapping.ac_field not in field_values:
                    continue
                raw = field_values.get(mapping.ac_field)
            column = self.schema.columns.get(mapping.dynamics_column)
            if column is None and not self.standard and self.schema.columns:
                problems.append(f"{mapping.dynamics_column}: no such column on {self.entity}")
                continue
            if column is None:
                column = ColumnInfo(mapping.dynamics_column, "String", 100)
            if column.type in LOOKUP_TYPES:
                continue  # lookups travel one way, as their name
            try:
                value = value_to_dynamics(
                    raw, mapping, column, self.schema.ac_fields.get(mapping.ac_field)
                )
            except Unconvertible as exc:
                problems.append(f"{mapping.dynamics_column}: {exc}")
                continue
            if mapping.ac_field == "email":
                value = normalize_email(value)
                if value is None:
                    continue  # never blank the email a link depends on
            body[mapping.dynamics_column] = value
        return InboundChange(body, tuple(problems))


# --- schema loading -------------------------------------------------------------------


def load_schema(dv, ac, entity: str) -> Schema:
    """Read the table's attribute metadata and the account's custom fields."""
    rows = dv.request(
        "GET",
        f"EntityDefinitions(LogicalName='{entity}')/Attributes",
        params={"$select": "LogicalName,AttributeType,AttributeTypeName,MaxLength"},
    ).json().get("value", [])
    columns: dict[str, ColumnInfo] = {}
    for row in rows:
        ctype = str(row.get("AttributeType") or "")
        type_name = str((row.get("AttributeTypeName") or {}).get("Value") or "")
        if type_name == "MultiSelectPicklistType":
            ctype = MULTI_SELECT
        columns[row["LogicalName"]] = ColumnInfo(row["LogicalName"], ctype, row.get("MaxLength"))
    ac_fields = {
        str(f["id"]): AcFieldInfo(str(f["id"]), str(f.get("type") or "text"), f.get("title") or "")
        for f in (ac.list_fields() if ac is not None else [])
    }
    return Schema(columns, ac_fields)


def schema_cache_key(connection_id: int, entity: str) -> str:
    return f"bridge:schema:{connection_id}:{entity}"


def cached_schema(redis, connection_id: int, entity: str, dv, ac) -> Schema:
    """``load_schema`` through a short Redis cache shared by every worker."""
    key = schema_cache_key(connection_id, entity)
    cached = redis.get(key)
    if cached:
        return Schema.from_json(cached)
    schema = load_schema(dv, ac, entity)
    redis.set(key, schema.to_json(), ex=SCHEMA_CACHE_SECONDS)
    return schema


def forget_schema(redis, connection_id: int, entity: str | None = None) -> None:
    """Drop the cached schema (after the admin changes fields or mappings)."""
    for name in [entity] if entity else ["lead", "contact"]:
        redis.delete(schema_cache_key(connection_id, name))


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
