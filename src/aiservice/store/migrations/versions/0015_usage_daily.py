"""The usage rollup: per UTC day and dimension tuple (owner, key, model served, route, the
metadata "feature"), the sums of the usage records, filled here from the records already
there and kept exact from then on by the store (store/usage_daily.py).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")
# Which dimensions were NULL (stored as ''): the bits of `nulls`.
NULL_BITS = {"owner": 1, "key_id": 2, "model_served": 4, "feature": 8}
DIMENSIONS = ("day", "owner", "key_id", "model_served", "route", "feature", "nulls")
MEASURES = ("requests", "input_tokens", "output_tokens", "cost_usd", "errors")


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("model_served", sa.String(256), primary_key=True),
        sa.Column("route", sa.String(64), primary_key=True),
        sa.Column("feature", sa.String(512), primary_key=True),
        sa.Column("nulls", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_daily_owner_day", "usage_daily", ["owner", "day"])
    op.execute(_backfill())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE usage_daily")  # planned from its statistics from the first read


def _backfill() -> sa.Insert:
    """INSERT … SELECT … GROUP BY over every usage record, on either backend: each record's
    dimensions (NULL as '', and its bit in `nulls`) in a subquery, grouped outside it."""
    records = sa.table(
        "usage_records",
        *(sa.column(name, sa.String) for name in ("day", "owner", "key_id", "model_served")),
        sa.column("route", sa.String),
        sa.column("metadata", Document),
        sa.column("input_tokens", sa.Integer),
        sa.column("output_tokens", sa.Integer),
        sa.column("cost_usd", sa.Float),
        sa.column("status_code", sa.Integer),
    )
    c = records.c
    nullable = {"owner": c.owner, "key_id": c.key_id, "model_served": c.model_served,
                "feature": c.metadata["feature"].as_string()}  # fmt: skip
    nulls: sa.ColumnElement[int] = sa.literal(0)
    for name, bit in NULL_BITS.items():
        nulls = nulls + sa.case((nullable[name].is_(None), bit), else_=0)
    each = sa.select(
        c.day,
        c.route,
        *(sa.func.coalesce(column, "").label(name) for name, column in nullable.items()),
        nulls.label("nulls"),
        c.input_tokens,
        c.output_tokens,
        c.cost_usd,
        sa.case((c.status_code >= 400, 1), else_=0).label("error"),
    ).subquery()
    keys = [each.c[name] for name in DIMENSIONS]
    grouped = sa.select(
        *keys,
        sa.func.count(),
        sa.func.sum(each.c.input_tokens),
        sa.func.sum(each.c.output_tokens),
        sa.func.sum(each.c.cost_usd),
        sa.func.sum(each.c.error),
    ).group_by(*keys)
    daily = sa.table("usage_daily", *(sa.column(name) for name in (*DIMENSIONS, *MEASURES)))
    return daily.insert().from_select([*DIMENSIONS, *MEASURES], grouped)


def downgrade() -> None:
    op.drop_index("ix_usage_daily_owner_day", "usage_daily")
    op.drop_table("usage_daily")
