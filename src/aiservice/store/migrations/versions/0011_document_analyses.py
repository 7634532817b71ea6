"""Document analyses: their chunks, stage jobs and report.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "document_analyses",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("principal", Document, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("chunks", Document, nullable=False),
        sa.Column("jobs", Document, nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("report", Document, nullable=True),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.Column("metadata", Document, nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_document_analyses_owner_seq", "document_analyses", ["owner", "seq"])
    op.create_index("ix_document_analyses_status", "document_analyses", ["status", "seq"])


def downgrade() -> None:
    op.drop_table("document_analyses")
