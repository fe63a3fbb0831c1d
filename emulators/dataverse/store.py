"""In-memory rows of every table, guarded by one lock, with undo-based transactions.

Rows hold internal values: str/int/float/bool/None, aware ``datetime`` (second precision) and
``Ref`` for lookups. Every write bumps one org-wide ``versionnumber`` (like SQL rowversion),
which change tracking and ETags are built on. Deletes leave tombstones so delta queries can
report ``$deletedEntity`` rows.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .metadata import MANY_TO_MANY, Table, build_tables

Row = dict[str, Any]


@dataclass(frozen=True)
class Ref:
    """A lookup value: the target table's logical name and the row id."""

    entity: str
    id: str


class RecordNotFound(LookupError):
    def __init__(self, entity: str, record_id: str) -> None:
        super().__init__(f"{entity} With Id = {record_id} Does Not Exist")
        self.entity = entity
        self.record_id = record_id


class DuplicateRecord(ValueError):
    def __init__(self) -> None:
        super().__init__("A record with matching key values already exists.")


@dataclass
class Transaction:
    """Undo actions for the writes done so far, plus work to run only after commit."""

    undo: list[Callable[[], None]] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_id() -> str:
    return str(uuid.uuid4())


class Store:
    """All state of the organization's tables. Public methods take the lock themselves."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = build_tables()
        self.by_set: dict[str, Table] = {t.entity_set: t for t in self.tables.values()}
        self.rows: dict[str, dict[str, Row]] = {name: {} for name in self.tables}
        self.tombstones: dict[str, dict[str, int]] = {name: {} for name in self.tables}
        self.associations: dict[str, set[tuple[str, str]]] = {n: set() for n in MANY_TO_MANY}
        self.alternate_keys: dict[str, list[tuple[str, ...]]] = {n: [] for n in self.tables}
        self.version = 1000
        self.min_delta_version = 0

    def next_version(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    # --- reads -------------------------------------------------------------------------------
    def get(self, entity: str, record_id: str) -> Row | None:
        with self.lock:
            row = self.rows[entity].get(record_id.lower())
            return copy.copy(row) if row is not None else None

    def require(self, entity: str, record_id: str) -> Row:
        row = self.get(entity, record_id)
        if row is None:
            raise RecordNotFound(entity, record_id)
        return row

    def all_rows(self, entity: str) -> list[Row]:
        with self.lock:
            return [copy.copy(r) for r in self.rows[entity].values()]

    def find(self, entity: str, **equals: Any) -> list[Row]:
        with self.lock:
            return [
                copy.copy(r)
                for r in self.rows[entity].values()
                if all(r.get(k) == v for k, v in equals.items())
            ]

    def find_by_key(self, entity: str, key: dict[str, Any]) -> Row | None:
        matches = self.find(entity, **key)
        return matches[0] if matches else None

    # --- writes ------------------------------------------------------------------------------
    def insert(self, table: Table, row: Row, tx: Transaction) -> Row:
        with self.lock:
            rid = row[table.primary_id]
            rows = self.rows[table.logical_name]
            if rid in rows:
                raise DuplicateRecord()
            self._check_keys(table, row, rid)
            row["versionnumber"] = self.next_version()
            rows[rid] = row
            tomb = self.tombstones[table.logical_name].pop(rid, None)

            def undo() -> None:
                with self.lock:
                    rows.pop(rid, None)
                    if tomb is not None:
                        self.tombstones[table.logical_name][rid] = tomb

            tx.undo.append(undo)
            return copy.copy(row)

    def replace(self, table: Table, rid: str, changes: Row, tx: Transaction) -> tuple[Row, Row]:
        """Apply ``changes`` to an existing row; returns (pre, post) copies."""
        with self.lock:
            rows = self.rows[table.logical_name]
            if rid not in rows:
                raise RecordNotFound(table.logical_name, rid)
            pre = rows[rid]
            post = {**pre, **changes}
            self._check_keys(table, post, rid)
            post["versionnumber"] = self.next_version()
            rows[rid] = post

            def undo() -> None:
                with self.lock:
                    if rid in rows:
                        rows[rid] = pre

            tx.undo.append(undo)
            return copy.copy(pre), copy.copy(post)

    def remove(self, table: Table, rid: str, tx: Transaction) -> Row:
        with self.lock:
            rows = self.rows[table.logical_name]
            if rid not in rows:
                raise RecordNotFound(table.logical_name, rid)
            pre = rows.pop(rid)
            self.tombstones[table.logical_name][rid] = self.next_version()
            removed_links = {
                name: {p for p in pairs if rid in p} for name, pairs in self.associations.items()
            }
            for name, pairs in removed_links.items():
                self.associations[name] -= pairs

            def undo() -> None:
                with self.lock:
                    rows[rid] = pre
                    self.tombstones[table.logical_name].pop(rid, None)
                    for name, pairs in removed_links.items():
                        self.associations[name] |= pairs

            tx.undo.append(undo)
            return copy.copy(pre)

    def _check_keys(self, table: Table, row: Row, rid: str) -> None:
        for key in self.alternate_keys[table.logical_name]:
            values = {c: row.get(c) for c in key}
            if any(v is None for v in values.values()):
                continue
            for other_id, other in self.rows[table.logical_name].items():
                if other_id != rid and all(other.get(c) == v for c, v in values.items()):
                    raise DuplicateRecord()

    def rollback(self, tx: Transaction) -> None:
        for action in reversed(tx.undo):
            action()
        tx.undo.clear()
        tx.after_commit.clear()

    # --- N:N ---------------------------------------------------------------------------------
    def associate(self, relationship: str, left: str, right: str) -> None:
        with self.lock:
            self.associations[relationship].add((left.lower(), right.lower()))

    def disassociate(self, relationship: str, left: str, right: str) -> bool:
        with self.lock:
            pair = (left.lower(), right.lower())
            if pair not in self.associations[relationship]:
                return False
            self.associations[relationship].discard(pair)
            return True

    def associated(self, relationship: str, record_id: str, from_left: bool) -> list[str]:
        with self.lock:
            rid = record_id.lower()
            if from_left:
                return [r for left, r in self.associations[relationship] if left == rid]
            return [left for left, r in self.associations[relationship] if r == rid]

    # --- change tracking ---------------------------------------------------------------------
    def changes_since(self, entity: str, version: int) -> tuple[list[Row], list[str]]:
        """Rows written after ``version`` (latest state, in version order) and deleted ids."""
        with self.lock:
            changed = sorted(
                (copy.copy(r) for r in self.rows[entity].values() if r["versionnumber"] > version),
                key=lambda r: r["versionnumber"],
            )
            deleted = [
                rid
                for rid, v in sorted(self.tombstones[entity].items(), key=lambda x: x[1])
                if v > version and rid not in self.rows[entity]
            ]
            return changed, deleted
