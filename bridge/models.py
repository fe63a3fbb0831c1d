"""Database models: connections, the record-link ledger, and sync runs.

One ``Connection`` per Dataverse organization. The ledger (``RecordLink``)
remembers which ActiveCampaign contact a Dynamics row became and what was last
pushed, so a worker can tell a real change from an echo and never create a
duplicate.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Connection(Base):
    """A Dynamics organization connected to one ActiveCampaign account."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataverse_url: Mapped[str] = mapped_column(String(300), unique=True)
    dataverse_org_id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    ac_api_url: Mapped[str | None] = mapped_column(String(300))
    ac_api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    ac_api_key_last4: Mapped[str | None] = mapped_column(String(4))
    dataverse_webhook_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    ac_webhook_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The systemuserid of the bridge's application user in this org (WhoAmI): a Dataverse
    # webhook whose UserId is this one reports the bridge's own write (echo suppression).
    dataverse_app_user_id: Mapped[str | None] = mapped_column(String(36))
    global_sync_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Sync settings (issue: admin experience). Frequency of the scheduled sync in hours.
    sync_frequency_hours: Mapped[int] = mapped_column(Integer, default=4)
    initial_sync_status: Mapped[str] = mapped_column(String(20), default="never")
    exclude_automations_on_import: Mapped[bool] = mapped_column(Boolean, default=True)
    # dynamics_wins | activecampaign_wins | most_recent (see ``workers.inbound``)
    conflict_rule: Mapped[str] = mapped_column(String(30), default="most_recent")
    connected_by: Mapped[str | None] = mapped_column(String(200))
    connected_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    links: Mapped[list[RecordLink]] = relationship(back_populates="connection")

    def __repr__(self) -> str:  # never includes secrets
        return f"<Connection {self.id} {self.dataverse_url}>"


class LinkStatus:
    """Values of ``RecordLink.status``."""

    PENDING = "pending"
    SYNCED = "synced"
    EXCLUDED = "excluded"
    FAILING = "failing"


class RecordLink(Base):
    """The ledger row for one Dynamics lead or contact."""

    __tablename__ = "record_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "entity", "dynamics_id", name="uq_link_record"),
        Index("ix_link_email", "connection_id", "email"),
        Index("ix_link_ac_contact", "connection_id", "ac_contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(20))
    dynamics_id: Mapped[str] = mapped_column(String(36))
    ac_contact_id: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    pushed_hash: Mapped[str | None] = mapped_column(String(64))
    pulled_hash: Mapped[str | None] = mapped_column(String(64))
    # The mapped Dynamics column values both sides agreed on after the last push or pull:
    # the base of the three-way comparison that tells a conflict from a one-sided change.
    synced_values: Mapped[dict | None] = mapped_column(JSON)
    # The last conflict (both sides changed a field) and how the connection's rule settled it.
    last_conflict: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=LinkStatus.PENDING)
    last_synced_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    connection: Mapped[Connection] = relationship(back_populates="links")


class SyncRun(Base):
    """One initial or scheduled sync, with counts and the checkpoint to resume from."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    records_total: Mapped[int] = mapped_column(Integer, default=0)
    records_done: Mapped[int] = mapped_column(Integer, default=0)
    records_failed: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class EntityConfig(Base):
    """How one table (lead or contact) of a connection syncs: on/off, criteria, field map.

    ``criteria`` is a list of ``{"field": <column>, "operator": <op>, "value": <v>}``
    that must all hold; operators: ``eq, ne, contains, begins_with, is_empty,
    is_not_empty, gt, lt, on, before, after``. ``field_mappings`` is a list of
    ``{"ac_field": "firstName" | "<custom field id>", "dynamics_column": <column>,
    "direction": "both" | "to_activecampaign" | "to_dynamics",
    "option_map": {"<dynamics option value>": "<ActiveCampaign option value>"}}``;
    an empty list means the standard mapping of ``bridge.mapping``.
    """

    __tablename__ = "entity_configs"
    __table_args__ = (UniqueConstraint("connection_id", "entity", name="uq_entity_config"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mode: Mapped[str] = mapped_column(String(20), default="all")  # "all" | "criteria"
    criteria: Mapped[list] = mapped_column(JSON, default=list)
    field_mappings: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class SyncCheckpoint(Base):
    """Where the scheduled sync of one table resumes: the Dataverse delta token, the
    ActiveCampaign ``updated_after`` cursor."""

    __tablename__ = "sync_checkpoints"
    __table_args__ = (UniqueConstraint("connection_id", "entity", name="uq_checkpoint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(20))
    delta_token: Mapped[str | None] = mapped_column(Text)
    ac_updated_after: Mapped[str | None] = mapped_column(String(40))
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ActionLog(Base):
    """One sales action (Add to Automation, Send Campaign): who, what, to whom, result."""

    __tablename__ = "action_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(30))  # add_to_automation | send_campaign
    target_id: Mapped[str] = mapped_column(String(20))  # automation or campaign id
    target_name: Mapped[str] = mapped_column(String(300), default="")
    entity: Mapped[str] = mapped_column(String(20))
    record_ids: Mapped[list] = mapped_column(JSON, default=list)
    user_systemuser_id: Mapped[str] = mapped_column(String(36))
    user_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    results: Mapped[dict] = mapped_column(JSON, default=dict)  # record id -> {status, detail}
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
