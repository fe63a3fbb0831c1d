"""Read side of the Web API: $select/$filter/$orderby/$top/$count, paging and change tracking.

Paging follows page-results.md: ``Prefer: odata.maxpagesize`` (default and max 5000), a
``$skiptoken`` cookie in ``@odata.nextLink`` and no ``$skip``. Change tracking follows
use-change-tracking-synchronize-data-external-systems.md: the last page of a tracked query
carries ``@odata.deltaLink`` with ``$deltatoken=<version>!<MM/dd/yyyy HH:mm:ss>``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from . import errors
from .errors import ApiError
from .metadata import Column, Table
from .odata_filter import FilterError, compile_filter
from .records import filter_value, readable_columns, to_json
from .store import Ref, Row, Store

MAX_PAGE = 5000
TRACKING_UNSUPPORTED = (
    "The $filter/ $orderby/ $expand / $top query parameter isn't supported "
    "when Change Tracking is enabled."
)


@dataclass
class Prefer:
    maxpagesize: int | None = None
    track_changes: bool = False
    annotations: bool = False
    return_representation: bool = False
    continue_on_error: bool = False


def parse_prefer(values: list[str]) -> Prefer:
    prefer = Prefer()
    for header in values:
        for item in header.split(","):
            item = item.strip()
            low = item.lower()
            if low.startswith("odata.maxpagesize="):
                with contextlib.suppress(ValueError):
                    prefer.maxpagesize = max(1, int(item.split("=", 1)[1]))
            elif low == "odata.track-changes":
                prefer.track_changes = True
            elif low.startswith("odata.include-annotations"):
                prefer.annotations = True
            elif low == "return=representation":
                prefer.return_representation = True
            elif low == "odata.continue-on-error":
                prefer.continue_on_error = True
    return prefer


def _lower_quote(text: str) -> str:
    """.NET-style URL encoding with lowercase hex, as in Dataverse paging cookies."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text, safe=""))


def select_columns(table: Table, select: str | None) -> list[Column] | None:
    if not select:
        return None
    cols = []
    for name in (s.strip() for s in select.split(",")):
        col = table.column_by_web_name(name)
        if col is None:
            raise errors.unknown_property(table.odata_type, name)
        cols.append(col)
    return cols


_EXPAND_ITEM = re.compile(r"^\s*(?P<nav>\w+)(?:\(\$select=(?P<select>[\w,\s]+)\))?\s*$")


def parse_expand(
    table: Table, text: str | None, tables: Mapping[str, Table]
) -> dict[str, tuple[Table, str, list[Column] | None]]:
    """``$expand`` of one-to-many collections, e.g. ``nav($select=a,b)``; nothing else."""
    if not text:
        return {}
    result = {}
    for part in re.split(r",(?![^(]*\))", text):
        m = _EXPAND_ITEM.match(part)
        if m is None or m.group("nav") not in table.one_to_many:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                "The emulator supports $expand only of one-to-many collections with an "
                f"optional $select, not '{part.strip()}'.",
            )
        child_name, column = table.one_to_many[m.group("nav")]
        child = tables[child_name]
        result[m.group("nav")] = (child, column, select_columns(child, m.group("select")))
    return result


def row_predicate(table: Table, text: str | None) -> Callable[[Row], bool]:
    if not text:
        return lambda row: True

    def check(name: str) -> None:
        if table.column_by_web_name(name) is None:
            raise errors.unknown_property(table.odata_type, name)

    try:
        return compile_filter(text, lambda row, name: filter_value(row, table, name), check)
    except FilterError as exc:
        raise ApiError(400, errors.QUERY_ERROR, str(exc)) from None


def sort_rows(
    rows: list[Any],
    orderby: str | None,
    value: Callable[[Any, str], Any],
    check: Callable[[str], None],
) -> list[Any]:
    """Stable multi-key sort; nulls first ascending (SQL Server), strings case-insensitive."""
    if not orderby:
        return rows
    keys = []
    for part in orderby.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
            raise ApiError(400, errors.QUERY_ERROR, f"Invalid $orderby expression '{orderby}'.")
        check(bits[0])
        keys.append((bits[0], len(bits) == 2 and bits[1] == "desc"))
    for name, desc in reversed(keys):

        def key(row: Any, name: str = name) -> tuple[int, Any]:
            v = value(row, name)
            if isinstance(v, str):
                v = v.casefold()
            if isinstance(v, Ref):
                v = v.id
            return (0, 0) if v is None else (1, v)

        rows = sorted(rows, key=key, reverse=desc)
    return rows


def context_url(api: str, table: Table, select: list[Column] | None, suffix: str = "") -> str:
    sel = f"({','.join(c.web_name for c in select)})" if select else ""
    return f"{api}/$metadata#{table.entity_set}{sel}{suffix}"


def delta_token(version: int, when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return f"{version}!{when.strftime('%m/%d/%Y %H:%M:%S')}"


class QueryEngine:
    """Answers collection and single-row GETs against the store."""

    def __init__(self, store: Store, api_url: Callable[[], str]) -> None:
        self.store = store
        self._api = api_url

    def names(self, ref: Ref) -> str | None:
        table = self.store.tables.get(ref.entity)
        row = self.store.get(ref.entity, ref.id) if table else None
        return row.get(table.primary_name) if row and table else None

    def row_json(
        self, table: Table, row: Row, select: list[Column] | None, prefer: Prefer
    ) -> dict[str, Any]:
        return to_json(table, row, select, prefer.annotations, self.names)

    def collection(
        self,
        table: Table,
        path: str,
        query: Mapping[str, str],
        prefer: Prefer,
        rows: list[Row] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """GET on an entity set (or a related collection when ``rows`` is given)."""
        api = self._api()
        for unsupported in ("$skip", "$apply"):
            if unsupported in query:
                raise ApiError(
                    400, errors.QUERY_ERROR, f"The query parameter {unsupported} is not supported"
                )
        expand = parse_expand(table, query.get("$expand"), self.store.tables)
        select = select_columns(table, query.get("$select"))
        if "$deltatoken" in query:
            return self._delta(table, path, query, select, prefer)
        if prefer.track_changes and any(k in query for k in ("$filter", "$orderby", "$top")):
            raise ApiError(400, errors.QUERY_ERROR, TRACKING_UNSUPPORTED)
        predicate = row_predicate(table, query.get("$filter"))
        source = rows if rows is not None else self.store.all_rows(table.logical_name)
        matched = [r for r in source if predicate(r)]

        def check(name: str) -> None:
            if table.column_by_web_name(name) is None:
                raise errors.unknown_property(table.odata_type, name)

        matched = sort_rows(
            matched, query.get("$orderby"), lambda r, n: filter_value(r, table, n), check
        )
        headers: dict[str, str] = {}
        applied = []
        page_size = MAX_PAGE
        if prefer.maxpagesize:
            page_size = min(prefer.maxpagesize, MAX_PAGE)
            applied.append(f"odata.maxpagesize={page_size}")
        top = None
        if "$top" in query and not prefer.maxpagesize:
            try:
                top = int(query["$top"])
            except ValueError:
                raise ApiError(
                    400,
                    errors.QUERY_ERROR,
                    f"Invalid value '{query['$top']}' for $top query option found.",
                ) from None
        if prefer.track_changes:
            applied.append("odata.track-changes")
        if applied:
            headers["Preference-Applied"] = ",".join(applied)
        total = len(matched)
        if top is not None:
            matched = matched[:top]

        cookie = parse_skiptoken(query.get("$skiptoken"))
        start = 0
        if cookie:
            start = self._resume_index(table, matched, cookie, page_size)
        page = matched[start : start + page_size]
        more = start + page_size < len(matched) and top is None
        tracking_version = cookie.get("version") if cookie else None
        if tracking_version is None:
            tracking_version = self.store.version
        body: dict[str, Any] = {"@odata.context": context_url(api, table, select)}
        if query.get("$count") == "true":
            body["@odata.count"] = total
        body["value"] = [self.row_json(table, r, select, prefer) for r in page]
        for row, item in zip(page, body["value"], strict=True):
            for nav, (child, column, child_select) in expand.items():
                item[nav] = [
                    self.row_json(child, c, child_select, prefer)
                    for c in self.store.all_rows(child.logical_name)
                    if c.get(column) == Ref(table.logical_name, row[table.primary_id])
                ]
        base_params = [(k, v) for k, v in query.items() if k not in ("$skiptoken",)]
        if more:
            number = cookie.get("page", 1) if cookie else 1
            token = make_skiptoken(
                table, number + 1, page, prefer.track_changes, int(tracking_version)
            )
            body["@odata.nextLink"] = _link(api, path, base_params + [("$skiptoken", token)])
        elif prefer.track_changes:
            body["@odata.deltaLink"] = _link(
                api,
                path,
                base_params + [("$deltatoken", delta_token(int(tracking_version)))],
                lower_keys=("$deltatoken",),
            )
        return body, headers

    def _resume_index(
        self, table: Table, rows: list[Row], cookie: dict[str, Any], page_size: int
    ) -> int:
        last = cookie.get("last")
        if last:
            for i, row in enumerate(rows):
                if row[table.primary_id] == last:
                    return i + 1
        return (cookie.get("page", 2) - 1) * page_size

    def _delta(
        self,
        table: Table,
        path: str,
        query: Mapping[str, str],
        select: list[Column] | None,
        prefer: Prefer,
    ) -> tuple[dict[str, Any], dict]:
        api = self._api()
        if any(k in query for k in ("$filter", "$orderby", "$top")):
            raise ApiError(400, errors.QUERY_ERROR, TRACKING_UNSUPPORTED)
        token = query["$deltatoken"]
        m = re.fullmatch(r"(\d+)!(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})", token.strip())
        version = int(m.group(1)) if m else -1
        with self.store.lock:
            current = self.store.version
            if not m or version < self.store.min_delta_version or version > current:
                raise ApiError(
                    400,
                    errors.EXPIRED_VERSION_STAMP,
                    "Version stamp associated with the client has expired. Please "
                    "perform a full sync.",
                )
            changed, deleted = self.store.changes_since(table.logical_name, version)
        value: list[dict[str, Any]] = [self.row_json(table, r, select, prefer) for r in changed]
        value += [
            {
                "@odata.context": f"{api}/$metadata#{table.entity_set}/$deletedEntity",
                "id": rid,
                "reason": "deleted",
            }
            for rid in deleted
        ]
        params = [(k, v) for k, v in query.items() if k != "$deltatoken"]
        body = {
            "@odata.context": context_url(api, table, select, "/$delta"),
            "@odata.deltaLink": _link(
                api,
                path,
                params + [("$deltatoken", delta_token(current))],
                lower_keys=("$deltatoken",),
            ),
            "value": value,
        }
        return body, {"Preference-Applied": "odata.track-changes"} if prefer.track_changes else {}


def _link(
    api: str, path: str, params: list[tuple[str, str]], lower_keys: tuple[str, ...] = ()
) -> str:
    parts = []
    for key, value in params:
        if key in lower_keys:
            parts.append(f"{key}={_lower_quote(value)}")
        elif key == "$skiptoken":
            parts.append(f"{key}={quote(value, safe='=/')}")
        else:
            parts.append(f"{key}={quote(value, safe=chr(36) + ',()=/:@*' + chr(39))}")
    return f"{api}/{path}?{'&'.join(parts)}"


def make_skiptoken(
    table: Table, page_number: int, page: list[Row], tracking: bool, version: int
) -> str:
    first = page[0][table.primary_id].upper() if page else ""
    last = page[-1][table.primary_id].upper() if page else ""
    inner = (
        f'<cookie page="{page_number - 1}" version="{version}"><{table.primary_id} '
        f'last="{{{last}}}" first="{{{first}}}" /></cookie>'
    )
    return (
        f'<cookie pagenumber="{page_number}" pagingcookie="{_lower_quote(inner)}" '
        f'istracking="{"True" if tracking else "False"}" />'
    )


def parse_skiptoken(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    number = re.search(r'pagenumber="(\d+)"', token)
    paging = re.search(r'pagingcookie="([^"]*)"', token)
    if not number or not paging:
        raise ApiError(400, errors.QUERY_ERROR, "The $skiptoken is not valid.")
    inner = unquote(paging.group(1))
    last = re.search(r'last="\{([0-9A-Fa-f-]+)\}"', inner)
    version = re.search(r'version="(\d+)"', inner)
    return {
        "page": int(number.group(1)),
        "last": last.group(1).lower() if last else None,
        "version": int(version.group(1)) if version else None,
    }


def metadata_rows(rows: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    """$filter/$select over metadata dicts (EntityDefinitions, Attributes)."""
    if query.get("$filter"):
        try:
            pred = compile_filter(
                query["$filter"], lambda row, name: row.get(name), lambda name: None
            )
        except FilterError as exc:
            raise ApiError(400, errors.QUERY_ERROR, str(exc)) from None
        rows = [r for r in rows if pred(r)]
    if query.get("$select"):
        wanted = [s.strip() for s in query["$select"].split(",")] + ["MetadataId"]
        keep = ("@odata.type", "OptionSet")
        rows = [{k: v for k, v in r.items() if k in wanted or k in keep} for r in rows]
    return rows


__all__ = ["QueryEngine", "Prefer", "parse_prefer", "readable_columns", "metadata_rows"]
