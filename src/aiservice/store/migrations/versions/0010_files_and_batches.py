"""Files (content in chunks, in the database) and batches with their lines.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
    )
    op.create_index("ix_files_owner_seq", "files", ["owner", "seq"])
    op.create_index("ix_files_expires_at", "files", ["expires_at"])
    op.create_table(
        "file_chunks",
        sa.Column(
            "file_seq",
            SequenceNumber,
            sa.ForeignKey("files.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    _create_batches()
    op.create_table(
        "batch_lines",
        sa.Column(
            "batch_seq",
            SequenceNumber,
            sa.ForeignKey("batches.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("body", Document, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("not_before", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("result", Document, nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
    )
    op.create_index("ix_batch_lines_state", "batch_lines", ["batch_seq", "state", "line"])
    op.create_index(
        "ix_batch_lines_custom_id", "batch_lines", ["batch_seq", "custom_id"], unique=True
    )


def _create_batches() -> None:
    op.create_table(
        "batches",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("principal", Document, nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("times", Document, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("errors", Document, nullable=True),
        sa.Column("metadata", Document, nullable=True),
        sa.Column("output_expires_after", Document, nullable=True),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        sa.Column("request_counts", Document, nullable=True),
        sa.Column("usage", Document, nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("upstream", Document, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_batches_owner_seq", "batches", ["owner", "seq"])
    op.create_index("ix_batches_status_seq", "batches", ["status", "seq"])


def downgrade() -> None:
    op.drop_table("batch_lines")
    op.drop_table("batches")
    op.drop_table("file_chunks")
    op.drop_table("files")
