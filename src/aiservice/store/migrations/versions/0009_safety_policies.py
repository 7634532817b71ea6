"""Content policy (moderation and PII modes) per user and per key.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")


# Plain ALTER TABLE on both backends, no batch: SQLite (3.35+) adds and drops a column in
# place. A batch rebuild of `users` would drop the table, and with foreign keys on, SQLite's
# implicit DELETE would cascade to every API key.
def upgrade() -> None:
    # Nullable, no default: every existing account keeps following the configured policy.
    op.add_column("users", sa.Column("safety", Document, nullable=True))
    op.add_column("api_keys", sa.Column("safety", Document, nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "safety")
    op.drop_column("users", "safety")
