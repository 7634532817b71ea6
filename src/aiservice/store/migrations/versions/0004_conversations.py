"""Conversations and their items.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("metadata", Document, nullable=False),
    )
    op.create_index("ix_conversations_owner", "conversations", ["owner"])
    op.create_table(
        "conversation_items",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_seq",
            SequenceNumber,
            sa.ForeignKey("conversations.seq", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("item", Document, nullable=False),
    )
    op.create_index(
        "ix_conversation_items_conversation_seq", "conversation_items", ["conversation_seq", "seq"]
    )
    op.create_index(
        "ix_conversation_items_item",
        "conversation_items",
        ["conversation_seq", "item_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("conversation_items")
    op.drop_table("conversations")
