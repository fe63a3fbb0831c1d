"""inbound sync and conflicts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dataverse_app_user_id", sa.String(length=36), nullable=True)
        )
    with op.batch_alter_table("record_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("synced_values", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("last_conflict", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("record_links", schema=None) as batch_op:
        batch_op.drop_column("last_conflict")
        batch_op.drop_column("synced_values")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("dataverse_app_user_id")
