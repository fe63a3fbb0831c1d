"""Organization-level write operations shared by the Web API, ``$batch`` and the Python helpers.

Every Create/Update/Delete goes through here so the platform columns, cascades, transactions and
webhook firing behave the same whichever way a write arrives.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError
from .identity import app_object_id
from .metadata import Table
from .records import from_json
from .store import DuplicateRecord, RecordNotFound, Ref, Row, Store, Transaction, new_id, utcnow
from .webhooks import ZERO_GUID, Change, Plan, WebhookDispatcher, WebhookFailure

DEFAULT_ROLES = (
    "System Administrator",
    "ActiveCampaign Admin",
    "ActiveCampaign User",
    "Salesperson",
)
SEEDED_MESSAGES = ("Create", "Update", "Delete")
NAME_PARTS = ("firstname", "middlename", "lastname")
_REF_RE = re.compile(r"(?:^|/)(\w+)\(([0-9a-fA-F-]{36})\)$")


@dataclass
class Actor:
    """The systemuser a write runs as, and who initiated it (differs under impersonation)."""

    user_id: str
    initiating_user_id: str
    user_aad_id: str = ZERO_GUID
    initiating_aad_id: str = ZERO_GUID
    user_agent: str = ""


@dataclass
class WriteOptions:
    tag: str | None = None
    correlation_id: str | None = None
    resolve: Callable[[str], Ref] | None = None  # overrides bind resolution ($batch Content-IDs)


class Organization:
    """The emulated org: seeded system data plus the write pipeline."""

    def __init__(
        self,
        store: Store,
        org_id: str,
        org_name: str,
        url: Callable[[], str],
        webhook_timeout: float,
    ) -> None:
        self.store = store
        self.org_id = org_id
        self.org_name = org_name
        self._url = url
        self.business_unit_id = self._seed_id("businessunit", org_name)
        self.system_user_id = self._seed_id("systemuser", "SYSTEM")
        self.org_info = {
            "id": org_id,
            "name": org_name,
            "url": "",
            "business_unit_id": self.business_unit_id,
        }
        self.webhooks = WebhookDispatcher(
            store, self.org_info, webhook_timeout, self._record_async_result
        )

    def _seed_id(self, kind: str, name: str) -> str:
        return str(uuid.uuid5(uuid.UUID(self.org_id), f"{kind}:{name}"))

    @property
    def url(self) -> str:
        return self._url()

    # --- seeding -----------------------------------------------------------------------------
    def seed(self, apps: dict[str, str]) -> None:
        """Root business unit, SYSTEM user, roles, SDK messages/filters and app users."""
        self.org_info["url"] = self.url
        now = utcnow()
        tx = Transaction()

        def put(entity: str, attrs: dict[str, Any]) -> str:
            table = self.store.tables[entity]
            row = {**attrs, "createdon": now, "modifiedon": now}
            self.store.insert(table, row, tx)
            return row[table.primary_id]

        put("businessunit", {"businessunitid": self.business_unit_id, "name": self.org_name})
        bu = Ref("businessunit", self.business_unit_id)
        put(
            "systemuser",
            {
                "systemuserid": self.system_user_id,
                "fullname": "SYSTEM",
                "isdisabled": False,
                "accessmode": 0,
                "businessunitid": bu,
            },
        )
        for name in DEFAULT_ROLES:
            put("role", {"roleid": self._seed_id("role", name), "name": name, "businessunitid": bu})
        filtered = [
            t for t in self.store.tables.values() if not t.logical_name.startswith("sdkmessage")
        ]
        for message in SEEDED_MESSAGES:
            msg_id = put(
                "sdkmessage",
                {"sdkmessageid": self._seed_id("sdkmessage", message), "name": message},
            )
            for table in filtered:
                put(
                    "sdkmessagefilter",
                    {
                        "sdkmessagefilterid": self._seed_id(
                            "filter", f"{message}:{table.logical_name}"
                        ),
                        "sdkmessageid": Ref("sdkmessage", msg_id),
                        "primaryobjecttypecode": table.logical_name,
                        "secondaryobjecttypecode": "none",
                        "iscustomprocessingstepallowed": True,
                    },
                )
        for client_id in apps:
            self.add_system_user(
                f"# {client_id}",
                app_object_id(client_id),
                roles=["System Administrator"],
                application_id=client_id,
                user_id=self._seed_id("appuser", client_id),
            )

    def add_system_user(
        self,
        fullname: str,
        aad_object_id: str,
        domainname: str = "",
        roles: list[str] | None = None,
        application_id: str | None = None,
        user_id: str | None = None,
    ) -> str:
        table = self.store.tables["systemuser"]
        now = utcnow()
        row: Row = {
            "systemuserid": (user_id or new_id()).lower(),
            "fullname": fullname,
            "domainname": domainname or None,
            "internalemailaddress": domainname or None,
            "azureactivedirectoryobjectid": aad_object_id.lower(),
            "isdisabled": False,
            "accessmode": 4 if application_id else 0,
            "applicationid": application_id,
            "businessunitid": Ref("businessunit", self.business_unit_id),
            "createdon": now,
            "modifiedon": now,
        }
        parts = fullname.split(" ", 1)
        if not application_id and len(parts) == 2:
            row["firstname"], row["lastname"] = parts
        self.store.insert(table, row, Transaction())
        for role_name in roles or []:
            self.store.associate(
                "systemuserroles_association", row["systemuserid"], self.role_id(role_name)
            )
        return row["systemuserid"]

    def role_id(self, name: str) -> str:
        roles = self.store.find("role", name=name)
        if not roles:
            raise ValueError(f"unknown role {name!r}")
        return roles[0]["roleid"]

    def user_by_aad(self, aad_object_id: str) -> Row | None:
        found = self.store.find("systemuser", azureactivedirectoryobjectid=aad_object_id.lower())
        return found[0] if found else None

    def actor(self, user_id: str | None = None) -> Actor:
        """The actor for Python-helper writes (SYSTEM unless a systemuser id is given)."""
        uid = (user_id or self.system_user_id).lower()
        row = self.store.get("systemuser", uid)
        aad = (row or {}).get("azureactivedirectoryobjectid") or ZERO_GUID
        return Actor(uid, uid, aad, aad)

    # --- references --------------------------------------------------------------------------
    def resolve_ref(self, value: str) -> Ref:
        """``/leads(<id>)`` or an absolute Web API URL -> Ref, checking the row exists."""
        m = _REF_RE.search(value.strip())
        table = self.store.by_set.get(m.group(1)) if m else None
        if m is None or table is None:
            raise ApiError(
                400,
                errors.QUERY_ERROR,
                f"The URI '{value}' is not valid because it is not based on "
                f"'{self.url}/api/data/v9.2/'.",
            )
        rid = m.group(2).lower()
        if self.store.get(table.logical_name, rid) is None:
            raise errors.not_found(table.logical_name, rid)
        return Ref(table.logical_name, rid)

    # --- transactions ------------------------------------------------------------------------
    def run(self, tx: Transaction | None, fn: Callable[[Transaction], Any]) -> Any:
        """Run ``fn`` in ``tx`` (caller commits) or in a new transaction committed here."""
        if tx is not None:
            return fn(tx)
        own = Transaction()
        try:
            result = fn(own)
        except BaseException:
            self.store.rollback(own)
            raise
        self.commit(own)
        return result

    def commit(self, tx: Transaction) -> None:
        actions = list(tx.after_commit)
        tx.undo.clear()
        tx.after_commit.clear()
        for action in actions:
            action()

    # --- writes ------------------------------------------------------------------------------
    def create(
        self,
        entity: str,
        body: dict[str, Any],
        actor: Actor,
        opts: WriteOptions,
        tx: Transaction | None = None,
        record_id: str | None = None,
    ) -> str:
        table = self.store.tables[entity]
        return self.run(tx, lambda t: self._create(table, body, actor, opts, t, record_id))

    def _create(
        self,
        table: Table,
        body: dict[str, Any],
        actor: Actor,
        opts: WriteOptions,
        tx: Transaction,
        record_id: str | None,
    ) -> str:
        attrs = from_json(table, body, opts.resolve or self.resolve_ref)
        rid = (record_id or attrs.get(table.primary_id) or new_id()).lower()
        now = utcnow()
        user = Ref("systemuser", actor.user_id)
        row: Row = {c.name: c.default for c in table.columns.values() if c.default is not None}
        row.update(attrs)
        row[table.primary_id] = rid
        row.update(createdon=now, modifiedon=now, createdby=user, modifiedby=user)
        if "ownerid" in table.columns:
            row.setdefault("ownerid", user)
            if row["ownerid"] is None:
                row["ownerid"] = user
            if row["ownerid"].entity == "systemuser":
                row["owninguser"] = row["ownerid"]
            row["owningbusinessunit"] = Ref("businessunit", self.business_unit_id)
        self._derive(table, row, attrs)
        if table.logical_name == "serviceendpoint" and row.get("contract") is None:
            raise ApiError(400, errors.VALIDATION, "contract is required for a service endpoint.")
        try:
            post = self.store.insert(table, row, tx)
        except DuplicateRecord as exc:
            raise ApiError(412, errors.DUPLICATE, str(exc)) from None
        target = dict(attrs)
        target[table.primary_id] = rid
        for name, value in post.items():
            if name not in target and value is not None and name != "versionnumber":
                target[name] = value
        self._fire(
            Change(table, "Create", rid, attrs, target, None, post, **self._who(actor, opts)), tx
        )
        return rid

    def update(
        self,
        entity: str,
        record_id: str,
        body: dict[str, Any],
        actor: Actor,
        opts: WriteOptions,
        tx: Transaction | None = None,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> bool:
        """Upsert semantics; returns True when the row was created."""
        table = self.store.tables[entity]
        rid = record_id.lower()

        def work(t: Transaction) -> bool:
            existing = self.store.get(entity, rid)
            if existing is None:
                if if_match is not None:
                    raise errors.not_found(entity, rid)
                self._create(table, body, actor, opts, t, rid)
                return True
            if if_none_match == "*":
                raise ApiError(
                    412, errors.DUPLICATE, "A record with matching key values already exists."
                )
            check_etag(existing, if_match)
            self._update(table, existing, body, actor, opts, t)
            return False

        return self.run(tx, work)

    def _update(
        self,
        table: Table,
        existing: Row,
        body: dict[str, Any],
        actor: Actor,
        opts: WriteOptions,
        tx: Transaction,
    ) -> None:
        attrs = from_json(table, body, opts.resolve or self.resolve_ref)
        attrs.pop(table.primary_id, None)
        rid = existing[table.primary_id]
        now = utcnow()
        changes: Row = dict(attrs)
        changes.update(modifiedon=now, modifiedby=Ref("systemuser", actor.user_id))
        merged = {**existing, **changes}
        derived = self._derive(table, merged, attrs)
        changes.update({k: merged[k] for k in derived})
        if "ownerid" in attrs and isinstance(attrs["ownerid"], Ref):
            changes["owninguser"] = (
                attrs["ownerid"] if attrs["ownerid"].entity == "systemuser" else None
            )
        pre, post = self.store.replace(table, rid, changes, tx)
        target = dict(attrs)
        target[table.primary_id] = rid
        for name in derived:
            target[name] = post.get(name)
        target.update(
            modifiedon=now, modifiedby=Ref("systemuser", actor.user_id), modifiedonbehalfby=None
        )
        self._fire(
            Change(table, "Update", rid, attrs, target, pre, post, **self._who(actor, opts)), tx
        )

    def delete(
        self,
        entity: str,
        record_id: str,
        actor: Actor,
        opts: WriteOptions,
        tx: Transaction | None = None,
        *,
        if_match: str | None = None,
    ) -> None:
        table = self.store.tables[entity]

        def work(t: Transaction) -> None:
            existing = self.store.get(entity, record_id)
            if existing is None:
                raise errors.not_found(entity, record_id.lower())
            check_etag(existing, if_match)
            self._delete(table, existing, actor, opts, t)

        self.run(tx, work)

    def _delete(
        self, table: Table, existing: Row, actor: Actor, opts: WriteOptions, tx: Transaction
    ) -> None:
        rid = existing[table.primary_id]
        for child_table, column in self._cascades(table):
            for child in self.store.find(
                child_table.logical_name, **{column: Ref(table.logical_name, rid)}
            ):
                self._delete(child_table, child, actor, opts, tx)
        try:
            pre = self.store.remove(table, rid, tx)
        except RecordNotFound:
            raise errors.not_found(table.logical_name, rid) from None
        self._fire(Change(table, "Delete", rid, {}, {}, pre, None, **self._who(actor, opts)), tx)

    def _cascades(self, table: Table) -> list[tuple[Table, str]]:
        """Parental relationships whose children are deleted with the parent."""
        out = []
        for nav_table, column in table.one_to_many.values():
            out.append((self.store.tables[nav_table], column))
        return out

    def _derive(self, table: Table, row: Row, attrs: dict[str, Any]) -> list[str]:
        """Platform-computed columns; returns the names recomputed because of ``attrs``."""
        changed = []
        if (
            "fullname" in table.columns
            and table.logical_name in ("lead", "contact")
            and (not attrs or any(p in attrs for p in NAME_PARTS))
        ):
            full = " ".join(row[p] for p in ("firstname", "lastname") if row.get(p)) or None
            row["fullname"] = row["yomifullname"] = full
            changed += ["fullname", "yomifullname"]
        status = table.columns.get("statuscode")
        if status is not None and status.status_states:
            states = dict(status.status_states)
            if "statuscode" in attrs and "statecode" not in attrs and attrs["statuscode"] in states:
                row["statecode"] = states[attrs["statuscode"]]
                changed.append("statecode")
            elif "statecode" in attrs and "statuscode" not in attrs:
                row["statuscode"] = next(
                    s for s, st in status.status_states if st == attrs["statecode"]
                )
                changed.append("statuscode")
        if "parentcustomerid" in attrs:
            ref = attrs["parentcustomerid"]
            row["parentcustomeridtype"] = ref.entity if isinstance(ref, Ref) else None
            changed.append("parentcustomeridtype")
        if table.logical_name == "annotation" and "objectid" in attrs:
            ref = attrs["objectid"]
            row["objecttypecode"] = ref.entity if isinstance(ref, Ref) else None
            changed.append("objecttypecode")
        if table.logical_name == "serviceendpoint" and "authvalue" in attrs:
            row["isauthvalueset"] = bool(attrs["authvalue"])
            changed.append("isauthvalueset")
        return changed

    @staticmethod
    def _who(actor: Actor, opts: WriteOptions) -> dict[str, Any]:
        who: dict[str, Any] = dict(
            user_id=actor.user_id,
            initiating_user_id=actor.initiating_user_id,
            user_aad_id=actor.user_aad_id,
            initiating_aad_id=actor.initiating_aad_id,
            user_agent=actor.user_agent,
            tag=opts.tag,
        )
        if opts.correlation_id:
            who["correlation_id"] = opts.correlation_id
        return who

    def _fire(self, change: Change, tx: Transaction) -> None:
        """Sync steps now (failure aborts the write), async steps once the write commits."""
        plans = self.webhooks.plans(change)
        sync = [p for p in plans if p.step.get("mode", 0) == 0]
        later = [p for p in plans if p.step.get("mode", 0) != 0]
        if sync:
            try:
                self.webhooks.deliver_sync(sync)
            except WebhookFailure as exc:
                raise ApiError(400, errors.WEBHOOK_FAILED, str(exc)) from None
        if later:
            tx.after_commit.append(lambda: self.webhooks.enqueue(later))

    def _record_async_result(self, plan: Plan, record: dict[str, Any]) -> None:
        """System job rows for async steps: failures always, successes unless asyncautodelete."""
        if record["ok"] and plan.step.get("asyncautodelete"):
            return
        now = utcnow()
        change = plan.change
        row: Row = {
            "asyncoperationid": new_id(),
            "name": plan.step.get("name"),
            "operationtype": 1,
            "statecode": 3,
            "statuscode": 30 if record["ok"] else 31,
            "friendlymessage": None if record["ok"] else record["error"],
            "message": None if record["ok"] else record["error"],
            "errorcode": None if record["ok"] else -2147204719,
            "completedon": now,
            "createdon": now,
            "modifiedon": now,
            "messagename": change.message,
            "primaryentitytype": change.table.logical_name,
            "correlationid": change.correlation_id,
            "owningextensionid": Ref(
                "sdkmessageprocessingstep", plan.step["sdkmessageprocessingstepid"]
            ),
            "regardingobjectid": (
                Ref(change.table.logical_name, change.record_id)
                if change.table.logical_name in ("lead", "contact", "account")
                else None
            ),
            "ownerid": Ref("systemuser", change.user_id),
        }
        self.store.insert(self.store.tables["asyncoperation"], row, Transaction())


def check_etag(row: Row, if_match: str | None) -> None:
    """``If-Match: W/"<version>"`` optimistic concurrency (``*`` only means 'must exist')."""
    if if_match is None or if_match.strip() == "*":
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if wanted != str(row.get("versionnumber")):
        raise ApiError(
            412,
            errors.CONCURRENCY,
            "The version of the existing record doesn't match the RowVersion property provided.",
        )
