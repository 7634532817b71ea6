"""The dashboard: its sign-in sessions; who made a stored completion (key and request, to
filter the log by key and to join its usage record); the indexes its views read by.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# (index, table, columns): the request log of an admin (everyone's rows) and of one key.
_INDEXES = (
    ("ix_chat_completions_model_seq", "chat_completions", ["model", "seq"]),
    ("ix_chat_completions_key_seq", "chat_completions", ["key_id", "seq"]),
    (
        "ix_chat_completion_metadata_any_owner",
        "chat_completion_metadata",
        ["key", "value", "completion_seq"],
    ),
    ("ix_responses_owner_seq", "responses", ["owner", "seq"]),
    ("ix_responses_key_seq", "responses", ["key_id", "seq"]),
    ("ix_responses_model_seq", "responses", ["model", "seq"]),
    ("ix_usage_records_request_id", "usage_records", ["request_id"]),
)


def upgrade() -> None:
    op.add_column("chat_completions", sa.Column("key_id", sa.String(40), nullable=True))
    op.add_column("chat_completions", sa.Column("request_id", sa.String(128), nullable=True))
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float, nullable=False),
    )
    op.create_index("ix_dashboard_sessions_last_seen_at", "dashboard_sessions", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table)
    op.drop_column("chat_completions", "request_id")
    op.drop_column("chat_completions", "key_id")
