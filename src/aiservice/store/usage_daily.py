"""The usage rollup (`usage_daily`), kept exact: every change to usage_records changes it
alike, in the same transaction. A record counts in the tuple of its day, owner, key, model
served, route and metadata "feature"; inserted, it adds to it; deleted (retention), it takes
away from it; pseudonymised (an erasure changing its owner or its "feature"), it moves from
the old tuple to the new one. A tuple left with no requests is deleted.

Deltas are summed per tuple in Python first (one upsert row per tuple, in key order so that
concurrent writers lock the rows they share in the same order), and taken from what the
database says it inserted, deleted or changed (RETURNING, or a SELECT of the rows): a record
replayed from a journal that was already there adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store.tables import UsageDaily, UsageRecord

RECORDS = UsageRecord.__table__
DAILY = UsageDaily.__table__
FEATURE_KEY = "feature"  # the metadata key the rollup keeps as a dimension
# The primary key's columns, and the bits of `nulls`: which dimensions were NULL (kept as '').
DIMENSIONS = ("day", "owner", "key_id", "model_served", "route", "feature", "nulls")
NULL_BITS = {"owner": 1, "key_id": 2, "model_served": 4, "feature": 8}
MEASURES = ("requests", "input_tokens", "output_tokens", "cost_usd", "errors")
Key = tuple[str, str, str, str, str, str, int]


def record_feature() -> ColumnElement[str | None]:
    """A record's metadata "feature", as `GET /v1/usage?group_by=metadata.feature` reads it."""
    return RECORDS.c.metadata[FEATURE_KEY].as_string()


def record_columns() -> list[ColumnElement[Any]]:
    """What a delta needs of each usage record: for a SELECT or a RETURNING."""
    c = RECORDS.c
    feature = record_feature().label("feature")
    return [c.day, c.owner, c.key_id, c.model_served, c.route, feature,
            c.input_tokens, c.output_tokens, c.cost_usd, c.status_code]  # fmt: skip


def _key(row: Row[Any]) -> Key:
    values = {name: getattr(row, name) for name in NULL_BITS}
    feature = values["feature"]
    if feature is not None and not isinstance(feature, str):  # metadata values are strings
        values["feature"] = str(feature)
    nulls = sum(bit for name, bit in NULL_BITS.items() if values[name] is None)
    text = {name: "" if value is None else value for name, value in values.items()}
    return (row.day, text["owner"], text["key_id"], text["model_served"], row.route,
            text["feature"], nulls)  # fmt: skip


def deltas(rows: Iterable[Row[Any]], sign: int) -> dict[Key, list[Any]]:
    """The records' sums per tuple, each times `sign` (1: added, -1: taken away)."""
    sums: dict[Key, list[Any]] = {}
    for row in rows:
        found = sums.setdefault(_key(row), [0, 0, 0, 0.0, 0])
        found[0] += sign
        found[1] += sign * row.input_tokens
        found[2] += sign * row.output_tokens
        found[3] += sign * row.cost_usd
        found[4] += sign if row.status_code >= 400 else 0
    return sums


def merged(*parts: dict[Key, list[Any]]) -> dict[Key, list[Any]]:
    """Several deltas as one (a tuple both taken from and added to appears once)."""
    total: dict[Key, list[Any]] = {}
    for part in parts:
        for key, sums in part.items():
            found = total.setdefault(key, [0, 0, 0, 0.0, 0])
            for index, value in enumerate(sums):
                found[index] += value
    return total


async def apply(session: AsyncSession, changes: dict[Key, list[Any]]) -> None:
    """Add `changes` to the rollup (upserts), then drop the tuples left without requests."""
    changes = {key: sums for key, sums in changes.items() if any(sums)}
    if not changes:
        return
    rows = [
        dict(zip(DIMENSIONS, key, strict=True)) | dict(zip(MEASURES, sums, strict=True))
        for key, sums in sorted(changes.items())
    ]
    statement = _insert(session, DAILY)
    statement = statement.on_conflict_do_update(
        index_elements=list(DIMENSIONS),
        set_={name: DAILY.c[name] + statement.excluded[name] for name in MEASURES},
    )
    await session.execute(statement, rows)
    emptied = [key for key, sums in changes.items() if sums[0] < 0]
    if emptied:
        key_columns = tuple_(*(DAILY.c[name] for name in DIMENSIONS))
        await session.execute(delete(DAILY).where(key_columns.in_(emptied), DAILY.c.requests <= 0))


async def insert_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert usage records (by column name) and add those really inserted to the rollup: one
    whose record_id is already there (a journal replayed after its batch was written) is
    skipped. Returns how many were inserted."""
    if not rows:
        return 0
    statement = _insert(session, RECORDS).on_conflict_do_nothing(index_elements=["record_id"])
    inserted = list(await session.execute(statement.returning(*record_columns()), list(rows)))
    await apply(session, deltas(inserted, 1))
    return len(inserted)


async def delete_records(session: AsyncSession, condition: ColumnElement[bool]) -> int:
    """Delete the usage records matching `condition` and take them from the rollup."""
    statement = delete(RECORDS).where(condition).returning(*record_columns())
    deleted = list(await session.execute(statement))
    await apply(session, deltas(deleted, -1))
    return len(deleted)


async def selected(session: AsyncSession, seqs: Sequence[int]) -> list[Row[Any]]:
    """These records' dimensions and measures (before and after an UPDATE that may move
    them to another tuple)."""
    chosen = select(*record_columns()).where(RECORDS.c.seq.in_(list(seqs)))
    return list(await session.execute(chosen))


async def rebuild(session: AsyncSession) -> int:
    """Compute the rollup again from every usage record (after records were written around
    the store, as benchmarks/dashboard_db.py seeds them). Returns its tuples."""
    await session.execute(delete(DAILY))
    c = RECORDS.c
    nullable = {"owner": c.owner, "key_id": c.key_id, "model_served": c.model_served,
                "feature": record_feature()}  # fmt: skip
    nulls: ColumnElement[int] = literal(0)
    for name, bit in NULL_BITS.items():
        nulls = nulls + case((nullable[name].is_(None), bit), else_=0)
    each = select(
        c.day,
        c.route,
        *(func.coalesce(column, "").label(name) for name, column in nullable.items()),
        nulls.label("nulls"),
        c.input_tokens,
        c.output_tokens,
        c.cost_usd,
        case((c.status_code >= 400, 1), else_=0).label("error"),
    ).subquery()
    keys = [each.c[name] for name in DIMENSIONS]
    grouped = select(
        *keys,
        func.count(),
        func.sum(each.c.input_tokens),
        func.sum(each.c.output_tokens),
        func.sum(each.c.cost_usd),
        func.sum(each.c.error),
    ).group_by(*keys)
    await session.execute(insert(DAILY).from_select([*DIMENSIONS, *MEASURES], grouped))
    return int(await session.scalar(select(func.count()).select_from(DAILY)) or 0)


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
