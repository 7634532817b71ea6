"""The usage ledger's table: batched inserts, grouped totals, and spend since a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store.database import Database
from aiservice.store.tables import UsageRecord

# The `endpoint` group: a short name per route. Background responses and document analyses
# are metered under /v1/responses, so they are "responses"; a batch's lines (whatever their
# endpoint) under /v1/batches (services.batch_line_run.BATCH_ROUTE). Any other route is its own.
ENDPOINT_NAMES: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/api/ai/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/batches": "batch",
    "/v1/moderations": "moderations",
    "/v1/embeddings": "embeddings",
}
# The e-mail features' routes (api.email_routes.EMAIL_PREFIX): "email.<last segment>".
EMAIL_ROUTE_PREFIX = "/api/ai/email/"
EMAIL_ENDPOINT_PREFIX = "email."


def _endpoint_column() -> ColumnElement[str]:
    """The endpoint's name, computed in SQL from the route (SQLite and PostgreSQL alike)."""
    route = UsageRecord.route
    email_feature = literal(EMAIL_ENDPOINT_PREFIX, String) + func.substr(
        route, len(EMAIL_ROUTE_PREFIX) + 1
    )
    return case(
        *[(route == path, literal(name, String)) for path, name in ENDPOINT_NAMES.items()],
        (route.like(EMAIL_ROUTE_PREFIX + "%"), email_feature),  # no wildcard in the prefix
        else_=route,
    )


# group_by names and the column each groups on; "metadata.<key>" is handled apart.
GROUP_COLUMNS: dict[str, Any] = {
    "day": UsageRecord.day,
    "model": UsageRecord.model_served,
    "key": UsageRecord.key_id,
    "user": UsageRecord.owner,
    "route": UsageRecord.route,
    "endpoint": _endpoint_column(),
}
METADATA_PREFIX = "metadata."


@dataclass(frozen=True, slots=True)
class UsageQuery:
    since: float = 0.0
    until: float | None = None
    owner: str | None = None  # None: everyone's (admins)
    group_by: tuple[str, ...] = ()
    # Only records whose metadata holds every one of these pairs (an analysis's, a batch's).
    metadata: tuple[tuple[str, str], ...] = ()


class UsageStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self._sessions.begin() as session:
            await insert_records(session, rows)

    async def totals(self, query: UsageQuery) -> list[dict[str, Any]]:
        """One row per group: the group's fields then requests, tokens, cost and errors,
        ordered by the group fields."""
        groups = [(name, _group_column(name)) for name in query.group_by]
        errors = func.sum(case((UsageRecord.status_code >= 400, 1), else_=0))
        statement = select(
            *[column.label(f"g{i}") for i, (_, column) in enumerate(groups)],
            func.count().label("requests"),
            func.coalesce(func.sum(UsageRecord.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(UsageRecord.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(UsageRecord.cost_usd), 0.0).label("cost_usd"),
            func.coalesce(errors, 0).label("errors"),
        ).where(*_window(query))
        if groups:
            labels = [f"g{i}" for i in range(len(groups))]
            statement = statement.group_by(*labels).order_by(*labels)
        async with self._sessions() as session:
            result = await session.execute(statement)
            rows = []
            for row in result.mappings():
                fields = {name: row[f"g{i}"] for i, (name, _) in enumerate(groups)}
                input_tokens, output_tokens = int(row["input_tokens"]), int(row["output_tokens"])
                if not groups and row["requests"] == 0:
                    continue  # no requests at all: an empty list, not a row of zeros
                rows.append(
                    fields
                    | {
                        "requests": int(row["requests"]),
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "total_tokens": input_tokens + output_tokens,
                        "cost_usd": round(float(row["cost_usd"]), 10),
                        "errors": int(row["errors"]),
                    }
                )
            return rows

    async def spent(
        self, since: float, owner: str | None = None, key_id: str | None = None
    ) -> float:
        """USD spent since `since` by a user (all their keys) or by one key."""
        subject = UsageRecord.owner == owner if owner is not None else UsageRecord.key_id == key_id
        statement = select(func.coalesce(func.sum(UsageRecord.cost_usd), 0.0)).where(
            subject, UsageRecord.created_at >= since
        )
        async with self._sessions() as session:
            return float(await session.scalar(statement) or 0.0)

    async def for_request(self, request_id: str) -> UsageRecord | None:
        """The usage record of one request (the first, should a job have written several)."""
        statement = (
            select(UsageRecord)
            .where(UsageRecord.request_id == request_id)
            .order_by(UsageRecord.seq)
            .limit(1)
        )
        async with self._sessions() as session:
            return await session.scalar(statement)

    async def records(self, query: UsageQuery, limit: int = 1000) -> list[UsageRecord]:
        """The records themselves, oldest first (tests and exports)."""
        statement = (
            select(UsageRecord).where(*_window(query)).order_by(UsageRecord.seq).limit(limit)
        )
        async with self._sessions() as session:
            return list(await session.scalars(statement))


async def insert_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert usage records in `session`'s transaction; one whose record_id is already there
    (a journal replayed after the batch was written) is skipped."""
    # The Core table, keyed by column names ("metadata", not the attribute `metadata_`),
    # and without the ORM's per-row bookkeeping.
    table = UsageRecord.__table__
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=["record_id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=["record_id"])
    else:
        statement = insert(table)
    await session.execute(statement, list(rows))


def _window(query: UsageQuery) -> list[ColumnElement[bool]]:
    conditions = [UsageRecord.created_at >= query.since]
    if query.until is not None:
        conditions.append(UsageRecord.created_at < query.until)
    if query.owner is not None:
        conditions.append(UsageRecord.owner == query.owner)
    for key, value in query.metadata:
        conditions.append(UsageRecord.metadata_[key].as_string() == value)
    return conditions


def _group_column(name: str) -> Any:
    if name.startswith(METADATA_PREFIX):
        return UsageRecord.metadata_[name.removeprefix(METADATA_PREFIX)].as_string()
    return GROUP_COLUMNS[name]
