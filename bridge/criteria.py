"""Sync criteria: one object that compiles to an OData ``$filter`` and evaluates in Python.

The initial sync asks Dataverse for the matching rows (``to_odata``); the
webhook and delta paths re-read one row and ask ``matches``. Both must give the
same answer for the same row, so the Python side copies Dataverse's semantics:

* string comparisons are case-insensitive (Dataverse's collation);
* a comparison with an empty (null) column is false, except ``is_empty`` and
  ``ne`` — "industry is not Retail" includes leads with no industry, so ``ne``
  compiles to ``(col ne v or col eq null)``;
* dates compare by UTC calendar day: ``on D`` is ``D <= col < D+1``,
  ``before D`` is ``col < D``, ``after D`` is ``col >= D+1``;
* an empty string counts as empty (Dataverse stores "" as null).

The configuration shape is ``EntityConfig.criteria``: a list of
``{"field", "operator", "value"}`` that must all hold.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = (
    "eq", "ne", "contains", "begins_with", "is_empty", "is_not_empty",
    "gt", "lt", "on", "before", "after",
)
NO_VALUE_OPERATORS = frozenset({"is_empty", "is_not_empty"})
DATE_OPERATORS = frozenset({"on", "before", "after"})
TEXT_OPERATORS = frozenset({"contains", "begins_with"})

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,99}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$"
)


class CriteriaError(ValueError):
    """The criteria configuration is malformed (the admin API answers 422 with this text)."""


def parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO date/datetime (string or datetime) as an aware UTC datetime; None if it is not one."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not (_ISO_DATE.match(text) or _ISO_DATETIME.match(text)):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _day(value: Any) -> dt.datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CriteriaError(f"{value!r} is not a date (expected YYYY-MM-DD)")
    return parsed.replace(hour=0, minute=0, second=0, microsecond=0)


def _odata_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def odata_literal(value: Any) -> str:
    """A JSON-ish value as an OData literal (strings quoted with '' escapes)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        return _odata_datetime(parse_datetime(value))  # type: ignore[arg-type]
    text = str(value)
    if parse_datetime(text) is not None:
        return _odata_datetime(parse_datetime(text))  # type: ignore[arg-type]
    return "'" + text.replace("'", "''") + "'"


def _comparable(value: Any, reference: Any) -> tuple[Any, Any] | None:
    """Bring a row value and a criteria value to one comparable type (None: incomparable)."""
    if isinstance(reference, bool) or isinstance(value, bool):
        if isinstance(reference, bool) and isinstance(value, bool):
            return value, reference
        return None
    if isinstance(reference, int | float):
        if isinstance(value, int | float):
            return value, reference
        return None
    ref_dt = parse_datetime(reference) if isinstance(reference, str) else None
    if ref_dt is not None:
        val_dt = parse_datetime(value)
        return (val_dt, ref_dt) if val_dt is not None else None
    if isinstance(reference, str) and isinstance(value, str):
        return value.casefold(), reference.casefold()
    return None


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: Any = None

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> Condition:
        if not isinstance(item, Mapping):
            raise CriteriaError("each condition must be an object with field, operator, value")
        field = str(item.get("field") or "").strip()
        operator = str(item.get("operator") or "").strip()
        value = item.get("value")
        if not _COLUMN.match(field):
            raise CriteriaError(f"{field!r} is not a Dataverse column name")
        if operator not in OPERATORS:
            raise CriteriaError(
                f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}"
            )
        if operator in NO_VALUE_OPERATORS:
            value = None
        elif value is None or value == "":
            raise CriteriaError(f"operator {operator!r} on {field} needs a value")
        elif operator in DATE_OPERATORS:
            _day(value)
            value = str(value)[:10] if isinstance(value, str) else value
        elif operator in TEXT_OPERATORS and not isinstance(value, str):
            raise CriteriaError(f"operator {operator!r} on {field} needs a text value")
        elif not isinstance(value, str | int | float | bool):
            raise CriteriaError(f"the value for {field} must be text, a number or true/false")
        elif isinstance(value, float) and not math.isfinite(value):
            raise CriteriaError(f"the value for {field} must be a finite number")
        return cls(field, operator, value)

    def as_config(self) -> dict[str, Any]:
        return {"field": self.field, "operator": self.operator, "value": self.value}

    # --- OData -------------------------------------------------------------------------

    def to_odata(self) -> str:
        col, op, value = self.field, self.operator, self.value
        if op == "is_empty":
            return f"{col} eq null"
        if op == "is_not_empty":
            return f"{col} ne null"
        if op == "eq":
            return f"{col} eq {odata_literal(value)}"
        if op == "ne":
            return f"({col} ne {odata_literal(value)} or {col} eq null)"
        if op == "contains":
            return f"contains({col},{odata_literal(str(value))})"
        if op == "begins_with":
            return f"startswith({col},{odata_literal(str(value))})"
        if op in ("gt", "lt"):
            return f"{col} {op} {odata_literal(value)}"
        day = _day(value)
        next_day = day + dt.timedelta(days=1)
        if op == "on":
            return f"({col} ge {_odata_datetime(day)} and {col} lt {_odata_datetime(next_day)})"
        if op == "before":
            return f"{col} lt {_odata_datetime(day)}"
        return f"{col} ge {_odata_datetime(next_day)}"  # after

    # --- Python ------------------------------------------------------------------------

    def matches(self, row: Mapping[str, Any]) -> bool:
        op = self.operator
        value = row.get(self.field)
        if op == "is_empty":
            return _is_empty(value)
        if op == "is_not_empty":
            return not _is_empty(value)
        if _is_empty(value):
            return op == "ne"
        if op in TEXT_OPERATORS:
            if not isinstance(value, str):
                return False
            hay, needle = value.casefold(), str(self.value).casefold()
            return needle in hay if op == "contains" else hay.startswith(needle)
        if op in DATE_OPERATORS:
            moment = parse_datetime(value)
            if moment is None:
                return False
            day = _day(self.value)
            if op == "on":
                return day <= moment < day + dt.timedelta(days=1)
            if op == "before":
                return moment < day
            return moment >= day + dt.timedelta(days=1)
        pair = _comparable(value, self.value)
        if pair is None:
            return op == "ne"
        left, right = pair
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "gt":
            return left > right
        return left < right

    def describe(self) -> str:
        if self.operator in NO_VALUE_OPERATORS:
            return f"{self.field} {self.operator.replace('_', ' ')}"
        return f"{self.field} {self.operator.replace('_', ' ')} {self.value!r}"


@dataclass(frozen=True)
class Criteria:
    """All conditions must hold; no conditions means every row matches."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_config(cls, items: Iterable[Mapping[str, Any]] | None) -> Criteria:
        if items is None:
            return cls()
        if isinstance(items, Mapping | str):
            raise CriteriaError("criteria must be a list of conditions")
        return cls(tuple(Condition.from_config(item) for item in items))

    @classmethod
    def for_entity_config(cls, mode: str | None, items: Any) -> Criteria:
        """The criteria an ``EntityConfig`` means: none in mode "all"."""
        if (mode or "all") == "all":
            return cls()
        return cls.from_config(items or [])

    def as_config(self) -> list[dict[str, Any]]:
        return [c.as_config() for c in self.conditions]

    @property
    def columns(self) -> list[str]:
        """The columns a row must carry for ``matches`` (add them to ``$select``)."""
        return sorted({c.field for c in self.conditions})

    def to_odata(self) -> str | None:
        """The ``$filter`` text, or None when every row matches."""
        if not self.conditions:
            return None
        return " and ".join(c.to_odata() for c in self.conditions)

    def matches(self, row: Mapping[str, Any]) -> bool:
        return all(c.matches(row) for c in self.conditions)

    def failed_condition(self, row: Mapping[str, Any]) -> Condition | None:
        """The first condition the row does not meet (for the exclusion reason)."""
        return next((c for c in self.conditions if not c.matches(row)), None)
