"""An index of stored responses' items by id, for `item_reference` inputs.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "response_items",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("response_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_response_items_owner_item", "response_items", ["owner", "item_id"])
    op.create_index("ix_response_items_response_id", "response_items", ["response_id"])


def downgrade() -> None:
    op.drop_table("response_items")
