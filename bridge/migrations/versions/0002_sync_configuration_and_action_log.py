"""sync configuration and action log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 19:01:15.281193
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("target_id", sa.String(length=20), nullable=False),
        sa.Column("target_name", sa.String(length=300), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("record_ids", sa.JSON(), nullable=False),
        sa.Column("user_systemuser_id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_action_log_connection_id"), ["connection_id"], unique=False
        )

    op.create_table(
        "entity_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("field_mappings", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id", "entity", name="uq_entity_config"),
    )
    op.create_table(
        "sync_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("delta_token", sa.Text(), nullable=True),
        sa.Column("ac_updated_after", sa.String(length=40), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id", "entity", name="uq_checkpoint"),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sync_frequency_hours", sa.Integer(), nullable=False, server_default="4")
        )
        batch_op.add_column(
            sa.Column(
                "initial_sync_status", sa.String(length=20), nullable=False, server_default="never"
            )
        )
        batch_op.add_column(
            sa.Column(
                "exclude_automations_on_import",
                sa.Boolean(),
                nullable=False,
                server_default=sa.true(),
            )
        )
        batch_op.add_column(
            sa.Column(
                "conflict_rule", sa.String(length=30), nullable=False, server_default="most_recent"
            )
        )
        batch_op.add_column(sa.Column("connected_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("connected_at")
        batch_op.drop_column("connected_by")
        batch_op.drop_column("conflict_rule")
        batch_op.drop_column("exclude_automations_on_import")
        batch_op.drop_column("initial_sync_status")
        batch_op.drop_column("sync_frequency_hours")

    op.drop_table("sync_checkpoints")
    op.drop_table("entity_configs")
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_log_connection_id"))

    op.drop_table("action_log")
