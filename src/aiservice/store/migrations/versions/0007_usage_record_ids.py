"""Each usage record's own id, unique: a record written twice (replayed from a process's
journal after it was killed, see metering/journal.py) is kept once.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.add_column(sa.Column("record_id", sa.String(32), nullable=True))
        table.create_index("ix_usage_records_record_id", ["record_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.drop_index("ix_usage_records_record_id")
        table.drop_column("record_id")
