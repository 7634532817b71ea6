"""The usage ledger's table: batched inserts, grouped totals, and spend since a time. Totals
over whole UTC days come from the daily rollup (usage_daily.py) when it can answer them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, literal, null, select

from aiservice.store.database import Database
from aiservice.store.tables import UsageDaily, UsageRecord
from aiservice.store.usage_daily import FEATURE_KEY, MEASURES, NULL_BITS, insert_records, rebuild

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


def endpoint_of(route: Any) -> ColumnElement[str]:
    """The endpoint's name, computed in SQL from a route column (SQLite and PostgreSQL alike):
    usage_records.route, or usage_daily.route, which must give the same names."""
    email_feature = literal(EMAIL_ENDPOINT_PREFIX, String) + func.substr(
        route, len(EMAIL_ROUTE_PREFIX) + 1
    )
    return case(
        *[(route == path, literal(name, String)) for path, name in ENDPOINT_NAMES.items()],
        (route.like(EMAIL_ROUTE_PREFIX + "%"), email_feature),  # no wildcard in the prefix
        else_=route,
    )


def _or_null(column: Any, bit: int) -> ColumnElement[Any]:
    """A rollup dimension as the records have it: NULL where `nulls` says it was."""
    return case((UsageDaily.nulls.op("&")(bit) != 0, null()), else_=column)


# group_by names and the column each groups on; "metadata.<key>" is handled apart.
GROUP_COLUMNS: dict[str, Any] = {
    "day": UsageRecord.day,
    "model": UsageRecord.model_served,
    "key": UsageRecord.key_id,
    "user": UsageRecord.owner,
    "route": UsageRecord.route,
    "endpoint": endpoint_of(UsageRecord.route),
}
METADATA_PREFIX = "metadata."
# The groups the rollup (usage_daily) answers too, each as the same values from its columns.
DAILY_GROUPS: dict[str, Any] = {
    "day": UsageDaily.day,
    "model": _or_null(UsageDaily.model_served, NULL_BITS["model_served"]),
    "key": _or_null(UsageDaily.key_id, NULL_BITS["key_id"]),
    "user": _or_null(UsageDaily.owner, NULL_BITS["owner"]),
    "route": UsageDaily.route,
    "endpoint": endpoint_of(UsageDaily.route),
    METADATA_PREFIX + FEATURE_KEY: _or_null(UsageDaily.feature, NULL_BITS["feature"]),
}
DAY_S = 86400


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

    async def rebuild_daily(self) -> int:
        """Compute the daily rollup again from the records (written around the store, as
        benchmarks seed them); returns its tuples."""
        async with self._sessions.begin() as session:
            return await rebuild(session)

    async def totals(self, query: UsageQuery) -> list[dict[str, Any]]:
        """One row per group: the group's fields then requests, tokens, cost and errors,
        ordered by the group fields. From the rollup when it holds the answer (whole UTC
        days, groups it keeps, no metadata filter), else from the records: the same rows."""
        return await self._totals(query, daily=daily_window(query) is not None)

    async def _totals(self, query: UsageQuery, *, daily: bool) -> list[dict[str, Any]]:
        groups = [(name, _group_column(name, daily)) for name in query.group_by]
        statement = select(
            *[column.label(f"g{i}") for i, (_, column) in enumerate(groups)],
            *(_daily_sums() if daily else _record_sums()),
        ).where(*(_daily_window(query) if daily else _window(query)))
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


def _record_sums() -> list[ColumnElement[Any]]:
    errors = func.sum(case((UsageRecord.status_code >= 400, 1), else_=0))
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(UsageRecord.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(UsageRecord.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(UsageRecord.cost_usd), 0.0).label("cost_usd"),
        func.coalesce(errors, 0).label("errors"),
    ]


def _daily_sums() -> list[ColumnElement[Any]]:
    zero = {"cost_usd": 0.0}
    return [
        func.coalesce(func.sum(getattr(UsageDaily, name)), zero.get(name, 0)).label(name)
        for name in MEASURES
    ]


def daily_window(query: UsageQuery) -> tuple[str, str | None] | None:
    """The UTC days [since, until) a query covers, if the rollup answers it exactly: every
    group one it keeps, no metadata filter, since and until at midnight. Else None."""
    if query.metadata or any(name not in DAILY_GROUPS for name in query.group_by):
        return None
    since = _midnight(query.since)
    until = None if query.until is None else _midnight(query.until)
    if since is None or (query.until is not None and until is None):
        return None
    return since, until


def _midnight(moment: float) -> str | None:
    """The UTC date of `moment` if it is that date's midnight (and a four-digit year)."""
    if moment % DAY_S != 0:  # NaN and infinities too
        return None
    try:
        day = datetime.fromtimestamp(moment, UTC).date()
    except (OverflowError, OSError, ValueError):
        return None
    return day.isoformat() if 1000 <= day.year <= 9999 else None


def _daily_window(query: UsageQuery) -> list[ColumnElement[bool]]:
    window = daily_window(query)
    if window is None:
        raise ValueError("the daily rollup cannot answer this query")
    since, until = window
    # A record's `day` is the UTC date of its created_at: whole days, the same records.
    conditions = [UsageDaily.day >= since]
    if until is not None:
        conditions.append(UsageDaily.day < until)
    if query.owner is not None:
        conditions.append(UsageDaily.owner == query.owner)
        if query.owner == "":  # a real '', not a NULL kept as ''
            conditions.append(UsageDaily.nulls.op("&")(NULL_BITS["owner"]) == 0)
    return conditions


def _window(query: UsageQuery) -> list[ColumnElement[bool]]:
    conditions = [UsageRecord.created_at >= query.since]
    if query.until is not None:
        conditions.append(UsageRecord.created_at < query.until)
    if query.owner is not None:
        conditions.append(UsageRecord.owner == query.owner)
    for key, value in query.metadata:
        conditions.append(UsageRecord.metadata_[key].as_string() == value)
    return conditions


def _group_column(name: str, daily: bool = False) -> Any:
    if daily:
        return DAILY_GROUPS[name]
    if name.startswith(METADATA_PREFIX):
        return UsageRecord.metadata_[name.removeprefix(METADATA_PREFIX)].as_string()
    return GROUP_COLUMNS[name]
