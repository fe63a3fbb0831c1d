"""What every sync path needs to know about one table of a connection.

``EntityConfig`` (written by the admin API) says whether the table syncs, which
rows (criteria) and how (field mappings). Every path — real-time push, initial
sync, delta sync, inbound — loads it through ``load_entity_setup`` so they all
apply the same switches, the same criteria and the same mapping engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bridge.criteria import Criteria, CriteriaError
from bridge.fieldmap import Mapped, Mapper, MappingError, cached_schema, parse_mappings
from bridge.mapping import entity_info
from bridge.models import Connection, EntityConfig
from bridge.runtime import Runtime

NO_EMAIL = "no email address"


class ConfigurationError(ValueError):
    """The stored sync configuration cannot be applied (shown to the admin as is)."""


@dataclass(frozen=True)
class EntitySetup:
    entity: str
    enabled: bool
    criteria: Criteria
    mapper: Mapper

    @property
    def info(self):
        return entity_info(self.entity)

    @property
    def select(self) -> list[str]:
        """Columns to read: the mapped ones plus those the criteria look at."""
        return sorted({*self.mapper.select, *self.criteria.columns})

    @property
    def annotations(self) -> bool:
        return self.mapper.needs_annotations

    def exclusion(self, row: Mapping[str, Any]) -> str | None:
        """Why this row must not be pushed (None: it should be)."""
        if not self.enabled:
            return f"{self.entity} sync is turned off"
        failed = self.criteria.failed_condition(row)
        if failed is not None:
            return f"does not meet the sync criteria ({failed.describe()})"
        return None

    def map(self, row: Mapping[str, Any]) -> Mapped:
        return self.mapper.to_activecampaign(row)


def entity_config(runtime: Runtime, connection_id: int, entity: str) -> dict[str, Any]:
    """The stored configuration as plain values (defaults when the admin never saved one)."""
    with runtime.db.session() as session:
        config = session.scalar(
            select(EntityConfig).where(
                EntityConfig.connection_id == connection_id, EntityConfig.entity == entity
            )
        )
        if config is None:
            return {"enabled": True, "mode": "all", "criteria": [], "field_mappings": []}
        return {
            "enabled": bool(config.enabled),
            "mode": config.mode or "all",
            "criteria": list(config.criteria or []),
            "field_mappings": list(config.field_mappings or []),
        }


def load_entity_setup(
    runtime: Runtime, connection_id: int, entity: str, dv=None, ac=None
) -> EntitySetup:
    """The table's setup; reads the schema (cached) only when custom mappings need it."""
    config = entity_config(runtime, connection_id, entity)
    try:
        criteria = Criteria.for_entity_config(config["mode"], config["criteria"])
        mappings = parse_mappings(config["field_mappings"])
    except (CriteriaError, MappingError) as exc:
        raise ConfigurationError(f"the {entity} sync configuration is invalid: {exc}") from None
    mapper = Mapper(entity, mappings)
    if mapper.needs_schema and dv is not None:
        schema = cached_schema(runtime.redis, connection_id, entity, dv, ac)
        mapper = Mapper(entity, mappings, schema)
    return EntitySetup(entity, config["enabled"], criteria, mapper)


def application_user_id(runtime: Runtime, connection_id: int, dv) -> str | None:
    """The bridge's application user in the org (``WhoAmI``), remembered on the connection.

    The Dataverse webhook view ignores changes whose ``UserId`` is this user.
    """
    with runtime.db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return None
        if connection.dataverse_app_user_id:
            return connection.dataverse_app_user_id
    user_id = str(dv.whoami().get("UserId") or "").strip("{}").lower() or None
    if user_id:
        with runtime.db.session() as session:
            connection = session.get(Connection, connection_id)
            if connection is not None:
                connection.dataverse_app_user_id = user_id
    return user_id
