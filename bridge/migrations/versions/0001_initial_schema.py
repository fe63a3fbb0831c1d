"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 18:36:19.425443
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dataverse_url", sa.String(length=300), nullable=False),
        sa.Column("dataverse_org_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("ac_api_url", sa.String(length=300), nullable=True),
        sa.Column("ac_api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("ac_api_key_last4", sa.String(length=4), nullable=True),
        sa.Column("dataverse_webhook_key_hash", sa.String(length=64), nullable=True),
        sa.Column("ac_webhook_token_hash", sa.String(length=64), nullable=True),
        sa.Column("global_sync_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ac_webhook_token_hash"),
        sa.UniqueConstraint("dataverse_webhook_key_hash"),
        sa.UniqueConstraint("dataverse_org_id"),
        sa.UniqueConstraint("dataverse_url"),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connections_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "record_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("dynamics_id", sa.String(length=36), nullable=False),
        sa.Column("ac_contact_id", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("pushed_hash", sa.String(length=64), nullable=True),
        sa.Column("pulled_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id", "entity", "dynamics_id", name="uq_link_record"),
    )
    with op.batch_alter_table("record_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_link_ac_contact", ["connection_id", "ac_contact_id"], unique=False
        )
        batch_op.create_index("ix_link_email", ["connection_id", "email"], unique=False)

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records_total", sa.Integer(), nullable=False),
        sa.Column("records_done", sa.Integer(), nullable=False),
        sa.Column("records_failed", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sync_runs_connection_id"), ["connection_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_runs_connection_id"))

    op.drop_table("sync_runs")
    with op.batch_alter_table("record_links", schema=None) as batch_op:
        batch_op.drop_index("ix_link_email")
        batch_op.drop_index("ix_link_ac_contact")

    op.drop_table("record_links")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connections_tenant_id"))

    op.drop_table("connections")
