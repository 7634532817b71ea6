"""A stored response's conversation, so that background jobs of one conversation are run one
at a time, in the order they were made.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("responses", sa.Column("conversation_id", sa.String(64), nullable=True))
    op.create_index("ix_responses_conversation_seq", "responses", ["conversation_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_responses_conversation_seq", "responses")
    op.drop_column("responses", "conversation_id")
