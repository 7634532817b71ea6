"""Rate limits per user and per key; each usage record's priority and queue wait.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("rate_limits", Document, nullable=True))
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("rate_limits", Document, nullable=True))
    with op.batch_alter_table("usage_records") as table:
        table.add_column(sa.Column("priority", sa.String(8), nullable=True))
        table.add_column(sa.Column("wait_ms", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.drop_column("wait_ms")
        table.drop_column("priority")
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("rate_limits")
    with op.batch_alter_table("users") as table:
        table.drop_column("rate_limits")
