"""Privacy and compliance: key expiry and rotation, zero data retention, the end user of a
usage record, the audit log and privacy erasures.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


# Plain ALTER TABLE for the added columns, no batch (see 0009: a batch rebuild of `users`
# would cascade-delete every API key on SQLite).
def upgrade() -> None:
    no = sa.false()
    op.add_column(
        "users", sa.Column("zero_retention", sa.Boolean, nullable=False, server_default=no)
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.BigInteger, nullable=True))
    op.add_column(
        "api_keys", sa.Column("zero_retention", sa.Boolean, nullable=False, server_default=no)
    )
    op.add_column("api_keys", sa.Column("successor_id", sa.String(40), nullable=True))
    op.add_column("usage_records", sa.Column("end_user", sa.String(256), nullable=True))
    op.create_index("ix_usage_records_end_user", "usage_records", ["end_user"])
    op.create_table(
        "audit_log",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", Document, nullable=True),
    )
    op.create_index("ix_audit_log_action_seq", "audit_log", ["action", "seq"])
    op.create_index("ix_audit_log_actor_seq", "audit_log", ["actor", "seq"])
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_table(
        "privacy_erasures",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("subject", Document, nullable=True),
        sa.Column("subject_digest", sa.String(64), nullable=True),
        sa.Column("pseudonym", sa.String(40), nullable=False),
        sa.Column("deleted", Document, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_privacy_erasures_status_seq", "privacy_erasures", ["status", "seq"])
    op.create_index("ix_privacy_erasures_subject_digest", "privacy_erasures", ["subject_digest"])


def downgrade() -> None:
    op.drop_table("privacy_erasures")
    op.drop_table("audit_log")
    op.drop_index("ix_usage_records_end_user", "usage_records")
    op.drop_column("usage_records", "end_user")
    op.drop_column("api_keys", "successor_id")
    op.drop_column("api_keys", "zero_retention")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("users", "zero_retention")
