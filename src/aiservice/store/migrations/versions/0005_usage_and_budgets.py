"""The usage ledger, budgets and their alerts; who enqueued a background response.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SequenceNumber = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("responses") as table:
        table.add_column(sa.Column("key_id", sa.String(40), nullable=True))
        table.add_column(sa.Column("request_id", sa.String(128), nullable=True))
    _create_usage_records()
    _create_budgets()


def _create_usage_records() -> None:
    op.create_table(
        "usage_records",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("background", sa.Boolean, nullable=False),
        sa.Column("model_requested", sa.String(256), nullable=True),
        sa.Column("model_served", sa.String(256), nullable=True),
        sa.Column("provider", sa.String(16), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=True),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("upstream_attempts", sa.Integer, nullable=False),
        sa.Column("metadata", Document, nullable=False),
    )
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_index("ix_usage_records_owner_created_at", "usage_records", ["owner", "created_at"])
    op.create_index("ix_usage_records_key_created_at", "usage_records", ["key_id", "created_at"])


def _create_budgets() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("soft", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_budgets_subject", "budgets", ["scope", "subject_id"], unique=True)
    op.create_table(
        "budget_alerts",
        sa.Column("seq", SequenceNumber, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("budget_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("spent_usd", sa.Float, nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_budget_alerts_once",
        "budget_alerts",
        ["budget_id", "period_start", "threshold"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
    op.drop_table("budgets")
    op.drop_table("usage_records")
    with op.batch_alter_table("responses") as table:
        table.drop_column("request_id")
        table.drop_column("key_id")
