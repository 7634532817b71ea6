"""Stored chat completions and their metadata pairs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "chat_completions",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("request", Document, nullable=False),
        sa.Column("response", Document, nullable=False),
        sa.Column("metadata", Document, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
    )
    op.create_index("ix_chat_completions_owner_seq", "chat_completions", ["owner", "seq"])
    op.create_index(
        "ix_chat_completions_owner_model_seq", "chat_completions", ["owner", "model", "seq"]
    )
    op.create_index("ix_chat_completions_expires_at", "chat_completions", ["expires_at"])
    op.create_table(
        "chat_completion_metadata",
        sa.Column(
            "completion_seq",
            SequenceNumber,
            sa.ForeignKey("chat_completions.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
    )
    op.create_index(
        "ix_chat_completion_metadata_lookup",
        "chat_completion_metadata",
        ["owner", "key", "value", "completion_seq"],
    )


def downgrade() -> None:
    op.drop_table("chat_completion_metadata")
    op.drop_table("chat_completions")
