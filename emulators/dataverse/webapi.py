"""Dataverse Web API v9.2 request dispatch, independent of Flask so ``$batch`` parts reuse it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import errors
from .batch import BatchRunner, Operation, Result, parse_batch
from .errors import ApiError
from .identity import Caller
from .metadata import (
    MANY_TO_MANY,
    Table,
    attribute_metadata,
    entity_definition,
    metadata_type,
)
from .query import QueryEngine, metadata_rows, parse_prefer, select_columns
from .records import GUID_RE, convert_value, json_value
from .service import Actor, Organization, WriteOptions
from .store import Ref, Transaction

JSON_TYPE = "application/json; odata.metadata=minimal"
_SEGMENT = re.compile(
    r"^(?P<set>[A-Za-z_][\w]*)(?:\((?P<key>[^)]*)\))?"
    r"(?:/(?P<nav>[A-Za-z_][\w.]*)(?:\((?P<navkey>[^)]*)\))?)?"
    r"(?P<ref>/\$ref)?(?P<count>/\$count)?$"
)
_ENTITY_DEF = re.compile(
    r"^EntityDefinitions(?:\(LogicalName='(?P<name>\w+)'\)|\((?P<id>[0-9a-fA-F-]{36})\))?"
    r"(?:/Attributes(?:\(LogicalName='(?P<attr>\w+)'\))?(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?"
    r"(?P<attrs_marker>))?$"
)


@dataclass
class ApiRequest:
    method: str
    path: str  # below /api/data/v9.2/
    query: dict[str, str]
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    caller: Caller
    correlation_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class WebApi:
    def __init__(self, org: Organization, api_url: Callable[[], str]) -> None:
        self.org = org
        self.store = org.store
        self._api = api_url
        self.query = QueryEngine(self.store, api_url)

    # --- entry -------------------------------------------------------------------------------
    def handle(
        self,
        req: ApiRequest,
        tx: Transaction | None = None,
        resolve: Callable[[str], Ref] | None = None,
    ) -> Result:
        try:
            return self._dispatch(req, tx, resolve)
        except ApiError as exc:
            return Result(
                exc.status,
                {"Content-Type": JSON_TYPE, **exc.headers},
                json.dumps(exc.body()).encode(),
            )

    def _dispatch(
        self, req: ApiRequest, tx: Transaction | None, resolve: Callable[[str], Ref] | None
    ) -> Result:
        path = req.path.strip("/")
        if path == "$batch" and req.method == "POST":
            return self._batch(req)
        if path in ("WhoAmI", "WhoAmI()") and req.method == "GET":
            return _json(
                200,
                {
                    "@odata.context": (
                        f"{self._api()}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
                    ),
                    "BusinessUnitId": self.org.business_unit_id,
                    "UserId": req.caller.user_id,
                    "OrganizationId": self.org.org_id,
                },
            )
        if path.startswith("EntityDefinitions"):
            return self._metadata(req, path)
        m = _SEGMENT.match(path)
        table = self.store.by_set.get(m.group("set")) if m else None
        if m is None or table is None:
            segment = path.split("/")[0].split("(")[0]
            raise ApiError(
                404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'."
            )
        key, nav, navkey = m.group("key"), m.group("nav"), m.group("navkey")
        if key is None:
            if m.group("count"):
                return self._count(table, req)
            if req.method == "GET":
                return self._list(table, req)
            if req.method == "POST":
                return self._create(table, req, tx, resolve)
            raise _method_not_allowed(req.method)
        if nav is None:
            if req.method == "GET":
                return self._get(table, key, req)
            if req.method == "PATCH":
                return self._upsert(table, key, req, tx, resolve)
            if req.method == "DELETE":
                return self._delete(table, key, req, tx)
            raise _method_not_allowed(req.method)
        rid = self._resolve_key(table, key)
        if m.group("ref"):
            return self._ref(table, rid, nav, navkey, req)
        if req.method == "GET":
            return self._related(table, rid, nav, req)
        raise _method_not_allowed(req.method)

    # --- helpers -----------------------------------------------------------------------------
    def actor(self, req: ApiRequest) -> Actor:
        caller = req.caller
        actor = Actor(
            caller.user_id,
            caller.initiating_user_id or caller.user_id,
            caller.aad_object_id or "00000000-0000-0000-0000-000000000000",
            caller.aad_object_id or "00000000-0000-0000-0000-000000000000",
            req.headers.get("User-Agent", ""),
        )
        impersonate = req.headers.get("CallerObjectId") or req.headers.get("MSCRMCallerID")
        if impersonate:
            if req.headers.get("CallerObjectId"):
                user = self.org.user_by_aad(impersonate)
            else:
                user = self.store.get("systemuser", impersonate)
            if user is None:
                raise ApiError(
                    403,
                    errors.NOT_ORG_MEMBER,
                    f"The user with id {impersonate} is not a member of the organization.",
                )
            actor.user_id = user["systemuserid"]
            actor.user_aad_id = user.get("azureactivedirectoryobjectid") or actor.user_aad_id
        return actor

    def _opts(self, req: ApiRequest, resolve: Callable[[str], Ref] | None) -> WriteOptions:
        return WriteOptions(
            tag=req.query.get("tag"), correlation_id=req.correlation_id or None, resolve=resolve
        )

    def _body(self, req: ApiRequest) -> dict[str, Any]:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise ApiError(
                400, errors.QUERY_ERROR, "Invalid JSON. The request body is not valid JSON."
            ) from None
        if not isinstance(body, dict):
            raise ApiError(400, errors.QUERY_ERROR, "Invalid JSON. An object was expected.")
        return body

    def entity_url(self, table: Table, rid: str) -> str:
        return f"{self._api()}/{table.entity_set}({rid})"

    def _resolve_key(self, table: Table, key: str, allow_missing: bool = False) -> str:
        key = unquote(key).strip()
        if GUID_RE.match(key):
            if not allow_missing and self.store.get(table.logical_name, key) is None:
                raise errors.not_found(table.logical_name, key.lower())
            return key.lower()
        values = self._alternate_key(table, key)
        row = self.store.find_by_key(table.logical_name, values)
        if row is None:
            if allow_missing:
                return ""
            desc = ",".join(f"{k}:{v}" for k, v in values.items())
            raise ApiError(
                404,
                errors.NOT_FOUND,
                f"A record with the specified key values does not exist in "
                f"{table.logical_name} entity: {desc}",
            )
        return row[table.primary_id]

    def _alternate_key(self, table: Table, key: str) -> dict[str, Any]:
        pairs = re.findall(r"(\w+)\s*=\s*('(?:[^']|'')*'|[^,]+)", key)
        if not pairs:
            raise ApiError(
                400, errors.QUERY_ERROR, f"Bad Request - Error in query syntax: '{key}'."
            )
        values: dict[str, Any] = {}
        for name, raw in pairs:
            col = table.columns.get(name)
            if col is None:
                raise errors.unknown_property(table.odata_type, name)
            if raw.startswith("'"):
                values[name] = raw[1:-1].replace("''", "'")
            else:
                values[name] = convert_value(table, col, json.loads(raw))
        declared = {tuple(sorted(k)) for k in self.store.alternate_keys[table.logical_name]}
        if tuple(sorted(values)) not in declared:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                f"The key {','.join(values)} is not a defined alternate key for the "
                f"{table.logical_name} entity.",
            )
        return values

    # --- reads -------------------------------------------------------------------------------
    def _list(self, table: Table, req: ApiRequest) -> Result:
        prefer = parse_prefer(_all(req.headers, "Prefer"))
        body, headers = self.query.collection(table, table.entity_set, req.query, prefer)
        return _json(200, body, headers)

    def _count(self, table: Table, req: ApiRequest) -> Result:
        from .query import row_predicate

        predicate = row_predicate(table, req.query.get("$filter"))
        count = sum(1 for r in self.store.all_rows(table.logical_name) if predicate(r))
        return Result(
            200, {"Content-Type": "text/plain", "OData-Version": "4.0"}, str(count).encode()
        )

    def _get(self, table: Table, key: str, req: ApiRequest) -> Result:
        rid = self._resolve_key(table, key)
        row = self.store.get(table.logical_name, rid)
        if row is None:
            raise errors.not_found(table.logical_name, rid)
        etag = f'W/"{row["versionnumber"]}"'
        if req.headers.get("If-None-Match") == etag:
            return Result(304, {"ETag": etag}, b"")
        prefer = parse_prefer(_all(req.headers, "Prefer"))
        select = select_columns(table, req.query.get("$select"))
        body = {
            "@odata.context": self._context(table, select, "/$entity"),
            **self.query.row_json(table, row, select, prefer),
        }
        return _json(200, body, {"ETag": etag})

    def _context(self, table: Table, select: list | None, suffix: str) -> str:
        sel = f"({','.join(c.web_name for c in select)})" if select else ""
        return f"{self._api()}/$metadata#{table.entity_set}{sel}{suffix}"

    def _related(self, table: Table, rid: str, nav: str, req: ApiRequest) -> Result:
        prefer = parse_prefer(_all(req.headers, "Prefer"))
        path = f"{table.entity_set}({rid})/{nav}"
        if nav in MANY_TO_MANY:
            left, right = MANY_TO_MANY[nav]
            other = right if table.logical_name == left else left
            ids = set(self.store.associated(nav, rid, from_left=table.logical_name == left))
            other_table = self.store.tables[other]
            rows = [r for r in self.store.all_rows(other) if r[other_table.primary_id] in ids]
            body, headers = self.query.collection(other_table, path, req.query, prefer, rows)
            return _json(200, body, headers)
        if nav in table.one_to_many:
            child_name, column = table.one_to_many[nav]
            child = self.store.tables[child_name]
            rows = [
                r
                for r in self.store.all_rows(child_name)
                if r.get(column) == Ref(table.logical_name, rid)
            ]
            body, headers = self.query.collection(child, path, req.query, prefer, rows)
            return _json(200, body, headers)
        col = table.column_by_web_name(nav)
        if col is None:
            found = table.nav_property(nav)
            if found is None:
                raise errors.unknown_property(table.odata_type, nav)
            col = found[0]
            ref = self.store.require(table.logical_name, rid).get(col.name)
            if not isinstance(ref, Ref):
                return Result(204, {}, b"")
            target = self.store.tables[ref.entity]
            row = self.store.require(ref.entity, ref.id)
            body = {
                "@odata.context": self._context(target, None, "/$entity"),
                **self.query.row_json(target, row, None, prefer),
            }
            return _json(200, body)
        row = self.store.require(table.logical_name, rid)
        value = json_value(row.get(col.name)) if col.readable else None
        return _json(
            200,
            {
                "@odata.context": f"{self._api()}/$metadata#{table.entity_set}({rid})/{nav}",
                "value": value,
            },
        )

    # --- writes ------------------------------------------------------------------------------
    def _create(
        self,
        table: Table,
        req: ApiRequest,
        tx: Transaction | None,
        resolve: Callable[[str], Ref] | None,
    ) -> Result:
        body = self._body(req)
        rid = self.org.create(
            table.logical_name, body, self.actor(req), self._opts(req, resolve), tx
        )
        return self._written(table, rid, req, created=True)

    def _written(self, table: Table, rid: str, req: ApiRequest, created: bool) -> Result:
        headers = {"OData-EntityId": self.entity_url(table, rid)}
        prefer = parse_prefer(_all(req.headers, "Prefer"))
        if prefer.return_representation:
            row = self.store.require(table.logical_name, rid)
            select = select_columns(table, req.query.get("$select"))
            body = {
                "@odata.context": self._context(table, select, "/$entity"),
                **self.query.row_json(table, row, select, prefer),
            }
            headers["Preference-Applied"] = "return=representation"
            headers["ETag"] = f'W/"{row["versionnumber"]}"'
            return _json(201 if created else 200, body, headers)
        return Result(204, headers, b"")

    def _upsert(
        self,
        table: Table,
        key: str,
        req: ApiRequest,
        tx: Transaction | None,
        resolve: Callable[[str], Ref] | None,
    ) -> Result:
        body = self._body(req)
        raw_key = unquote(key).strip()
        if GUID_RE.match(raw_key):
            rid = raw_key.lower()
        else:
            values = self._alternate_key(table, raw_key)
            existing = self.store.find_by_key(table.logical_name, values)
            if existing is not None:
                rid = existing[table.primary_id]
            else:
                rid = None
                body = {**{k: json_value(v) for k, v in values.items()}, **body}
        if_match = req.headers.get("If-Match")
        if_none_match = req.headers.get("If-None-Match")
        if rid is None:
            if if_match is not None:
                desc = ",".join(f"{k}:{v}" for k, v in values.items())
                raise ApiError(
                    404,
                    errors.NOT_FOUND,
                    f"A record with the specified key values does not exist in "
                    f"{table.logical_name} entity: {desc}",
                )
            from .store import new_id

            rid = new_id()
        created = self.org.update(
            table.logical_name,
            rid,
            body,
            self.actor(req),
            self._opts(req, resolve),
            tx,
            if_match=if_match,
            if_none_match=if_none_match,
        )
        return self._written(table, rid, req, created)

    def _delete(self, table: Table, key: str, req: ApiRequest, tx: Transaction | None) -> Result:
        rid = self._resolve_key(table, key, allow_missing=True)
        if not rid:
            raise ApiError(
                404,
                errors.NOT_FOUND,
                "A record with the specified key values does not exist in "
                f"{table.logical_name} entity",
            )
        self.org.delete(
            table.logical_name,
            rid,
            self.actor(req),
            self._opts(req, None),
            tx,
            if_match=req.headers.get("If-Match"),
        )
        return Result(204, {}, b"")

    def _ref(self, table: Table, rid: str, nav: str, navkey: str | None, req: ApiRequest) -> Result:
        if nav not in MANY_TO_MANY:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                f"The emulator supports $ref only for N:N relationships, not '{nav}'.",
            )
        left, _right = MANY_TO_MANY[nav]
        from_left = table.logical_name == left
        if req.method == "POST":
            target = self.org.resolve_ref(str(self._body(req).get("@odata.id", "")))
            pair = (rid, target.id) if from_left else (target.id, rid)
            self.store.associate(nav, *pair)
            return Result(204, {}, b"")
        if req.method == "DELETE":
            other = navkey or ""
            if not other and "$id" in req.query:
                other = self.org.resolve_ref(req.query["$id"]).id
            other = unquote(other).strip().lower()
            pair = (rid, other) if from_left else (other, rid)
            if not self.store.disassociate(nav, *pair):
                raise ApiError(
                    404,
                    errors.NOT_FOUND,
                    f"The association {nav} between {rid} and {other} does not exist.",
                )
            return Result(204, {}, b"")
        raise _method_not_allowed(req.method)

    # --- $batch --------------------------------------------------------------------------------
    def _batch(self, req: ApiRequest) -> Result:
        parts = parse_batch(req.body, req.headers.get("Content-Type", ""))
        prefer = parse_prefer(_all(req.headers, "Prefer"))
        api = self._api()

        def execute(op: Operation, tx: Transaction, resolve: Callable[[str], Ref] | None) -> Result:
            url = op.url
            split = urlsplit(url)
            path = split.path
            if "/api/data/" in path:  # drop the service root and version segment
                path = path.split("/api/data/", 1)[1].partition("/")[2]
            headers = _CaseInsensitive({**dict(req.headers.items()), **op.headers})
            sub = ApiRequest(
                op.method,
                unquote(path),
                dict(parse_qsl(split.query)),
                headers,
                op.body,
                req.caller,
                req.correlation_id,
            )
            return self.handle(sub, tx, resolve)

        runner = BatchRunner(execute, self.org.resolve_ref, api)
        content_type, body = runner.run(
            parts, prefer.continue_on_error, Transaction, self.org.commit, self.store.rollback
        )
        return Result(200, {"Content-Type": content_type, "OData-Version": "4.0"}, body)

    # --- metadata ------------------------------------------------------------------------------
    def _metadata(self, req: ApiRequest, path: str) -> Result:
        if req.method != "GET":
            raise _method_not_allowed(req.method)
        m = _ENTITY_DEF.match(path)
        if m is None:
            raise ApiError(
                404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{path}'."
            )
        api = self._api()
        if m.group("name") is None and m.group("id") is None:
            rows = metadata_rows(
                [entity_definition(t) for t in self.store.tables.values()], req.query
            )
            return _json(
                200, {"@odata.context": f"{api}/$metadata#EntityDefinitions", "value": rows}
            )
        table = self.store.tables.get(m.group("name") or "")
        if table is None:
            raise ApiError(
                404,
                errors.NOT_FOUND,
                f"Could not find entity with name '{m.group('name') or m.group('id')}'.",
            )
        if m.group("attrs_marker") is None:
            body = entity_definition(table)
            body = (
                metadata_rows([body], {"$select": req.query.get("$select", "")})[0]
                if req.query.get("$select")
                else body
            )
            return _json(
                200, {"@odata.context": f"{api}/$metadata#EntityDefinitions/$entity", **body}
            )
        expand = "OptionSet" in req.query.get("$expand", "")
        cols = list(table.columns.values())
        if m.group("cast"):
            cols = [c for c in cols if metadata_type(c) == m.group("cast")]
        if m.group("attr"):
            col = table.columns.get(m.group("attr"))
            if col is None or col not in cols:
                raise ApiError(
                    404,
                    errors.NOT_FOUND,
                    f"Could not find attribute '{m.group('attr')}' on '{table.logical_name}'.",
                )
            body = attribute_metadata(table, col, expand)
            return _json(
                200,
                {
                    "@odata.context": f"{api}/$metadata#EntityDefinitions('"
                    f"{table.logical_name}')/Attributes/$entity",
                    **body,
                },
            )
        rows = metadata_rows([attribute_metadata(table, c, expand) for c in cols], req.query)
        return _json(
            200,
            {
                "@odata.context": f"{api}/$metadata#EntityDefinitions('"
                f"{table.logical_name}')/Attributes",
                "value": rows,
            },
        )


class _CaseInsensitive(dict):
    """Header dict with case-insensitive ``get`` (batch part headers override the outer ones)."""

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in data.items()})

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def getlist(self, key: str) -> list[str]:
        value = self.get(key)
        return [value] if value is not None else []


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    value = headers.get(name)
    return [value] if value else []


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Result:
    return Result(
        status,
        {"Content-Type": JSON_TYPE, "OData-Version": "4.0", **(headers or {})},
        json.dumps(body).encode(),
    )


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "0x8006088b", f"The HTTP method '{method}' is not allowed here.")
