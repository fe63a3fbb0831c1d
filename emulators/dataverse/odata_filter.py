"""A parser for the subset of OData ``$filter`` the bridge uses, compiled to a Python predicate.

Supported: ``eq ne gt ge lt le``, ``and or not``, parentheses, ``contains()``, ``startswith()``,
``endswith()``, and literals: 'string' (with '' escapes), numbers, true/false, null, GUIDs and
ISO date/datetimes. String comparisons are case-insensitive like Dataverse's SQL collation; a
comparison with a null column value is false except ``eq null`` / ``ne null`` (SQL semantics).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Getter = Callable[[Row, str], Any]
Predicate = Callable[[Row], bool]


class FilterError(ValueError):
    """The filter is malformed or names an unknown property (the Web API answers 400)."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
    | (?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)(?![\w:])
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlLfF]?)(?![\w])
    | (?P<punc>[(),])
    | (?P<word>[A-Za-z_@][\w.@/]*)
    )""",
    re.VERBOSE,
)

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "str":
            tokens.append(("lit", raw[1:-1].replace("''", "'")))
        elif kind == "guid":
            tokens.append(("lit", raw.lower()))
        elif kind == "dt":
            tokens.append(("lit", parse_datetime(raw)))
        elif kind == "num":
            raw = raw.rstrip("mMdDlLfF")
            tokens.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "punc":
            tokens.append((raw, raw))
        elif raw in ("true", "false"):
            tokens.append(("lit", raw == "true"))
        elif raw == "null":
            tokens.append(("lit", None))
        else:
            tokens.append(("word", raw))
    return tokens


def parse_datetime(raw: str) -> dt.datetime:
    """ISO date or datetime -> aware UTC datetime (dates mean midnight UTC)."""
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _norm(value: Any) -> Any:
    """Normalise for comparison: case-insensitive strings, aware datetimes."""
    if isinstance(value, str):
        return value.casefold()
    return value


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, dt.datetime) and isinstance(right, str):
        right = parse_datetime(right)
    elif isinstance(right, dt.datetime) and isinstance(left, str):
        left = parse_datetime(left)
    if isinstance(left, bool) != isinstance(right, bool):
        raise TypeError("bool vs non-bool")
    return _norm(left), _norm(right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    try:
        left, right = _coerce(left, right)
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "lt":
            return left < right
        return left <= right
    except TypeError:
        return op == "ne"


class _Parser:
    def __init__(
        self, tokens: list[tuple[str, Any]], getter: Getter, check_property: Callable[[str], None]
    ) -> None:
        self.tokens = tokens
        self.pos = 0
        self.getter = getter
        self.check_property = check_property

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise FilterError("Unexpected end of $filter expression.")
        self.pos += 1
        return tok

    def expect(self, kind: str) -> None:
        tok = self.take()
        if tok[0] != kind:
            raise FilterError(f"Expected '{kind}' but found '{tok[1]}'.")

    def at_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1] == word

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"Syntax error: unexpected '{self.peek()[1]}' in $filter.")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at_word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at_word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def not_expr(self) -> Predicate:
        if self.at_word("not"):
            self.take()
            inner = self.not_expr()
            return lambda row: not inner(row)
        return self.comparison()

    def comparison(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok[0] == "(":
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        if tok is not None and tok[0] == "word" and tok[1] in _FUNCTIONS:
            return self.function()
        left = self.operand()
        op_tok = self.take()
        if op_tok[0] != "word" or op_tok[1] not in _COMPARE:
            raise FilterError(f"Syntax error: expected a comparison operator, found '{op_tok[1]}'.")
        right = self.operand()
        op = op_tok[1]
        return lambda row: _compare(op, left(row), right(row))

    def operand(self) -> Callable[[Row], Any]:
        kind, value = self.take()
        if kind == "lit":
            return lambda row: value
        if kind == "word":
            self.check_property(value)
            return lambda row: self.getter(row, value)
        raise FilterError(f"Syntax error: unexpected '{value}' in $filter.")

    def function(self) -> Predicate:
        name = self.take()[1]
        self.expect("(")
        subject = self.operand()
        self.expect(",")
        needle = self.operand()
        self.expect(")")

        def check(row: Row) -> bool:
            hay, sub = subject(row), needle(row)
            if not isinstance(hay, str) or not isinstance(sub, str):
                return False
            hay, sub = hay.casefold(), sub.casefold()
            if name == "contains":
                return sub in hay
            if name == "startswith":
                return hay.startswith(sub)
            return hay.endswith(sub)

        return check


def compile_filter(text: str, getter: Getter, check_property: Callable[[str], None]) -> Predicate:
    """Parse ``text``; ``check_property`` raises FilterError for unknown names."""
    return _Parser(_tokenize(text), getter, check_property).parse()
