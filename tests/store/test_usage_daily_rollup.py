"""The daily usage rollup on each backend: kept by every insert (a record replayed from a
journal counted once), it gives exactly the totals the records give for every combination of
the groups it keeps and every window of whole UTC days; anything else is read from the
records; the dashboard's and the API's date windows fall on midnights."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from aiservice.services.usage import usage_query
from aiservice.store.database import Database
from aiservice.store.usage import UsageQuery, UsageStore, daily_window
from aiservice.store.usage_daily import insert_records
from usage_daily_support import (
    DAYS,
    assert_rollup_agrees,
    assert_rollup_is_exact,
    midnight,
    records,
    rollup_rows,
    seed,
)


async def test_the_rollup_gives_the_totals_the_records_give(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        rows = records(300)
        await seed(store, rows)
        # The job paths write their record in their own transaction: the same function.
        extra = records(2, seed=7)
        extra[0] |= {"record_id": "job-1", "day": "2026-11-29", "created_at": midnight(1) + 5}
        extra[1] |= {"record_id": None, "day": "2026-11-29", "created_at": midnight(1) + 6}
        async with database.sessions.begin() as session:
            assert await insert_records(session, extra) == 2
            assert await insert_records(session, extra[:1]) == 0  # already there
        written = rows + extra

        [total] = await store.totals(UsageQuery())
        assert total["requests"] == len(written)  # each replayed record counted once
        assert total["errors"] == sum(r["status_code"] >= 400 for r in written)
        assert total["input_tokens"] == sum(r["input_tokens"] for r in written)
        by_day = await store.totals(UsageQuery(group_by=("day",)))
        assert {r["day"]: r["requests"] for r in by_day} == Counter(r["day"] for r in written)
        features = await store.totals(UsageQuery(group_by=("metadata.feature",)))
        # No "feature" (None) and an empty one ("") are two groups, as in the records.
        assert {r["metadata.feature"] for r in features} == {None, "", "reply", "summarize",
                                                               "triage"}  # fmt: skip

        assert await assert_rollup_agrees(store) > 900
        await assert_rollup_is_exact(database)
    finally:
        await database.close()


async def test_one_owners_totals_read_only_their_tuples(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        rows = records(200, seed=11)
        await seed(store, rows)
        mine = [r for r in rows if r["owner"] == "u2"]
        [total] = await store.totals(UsageQuery(owner="u2"))
        assert total["requests"] == len(mine) > 0
        assert round(total["cost_usd"], 6) == round(sum(r["cost_usd"] for r in mine), 6)
        # An owner "" is not the records without owner.
        [empty] = await store.totals(UsageQuery(owner=""))
        assert empty["requests"] == sum(r["owner"] == "" for r in rows)
        assert await store.totals(UsageQuery(owner="nobody")) == []
        windows = ((0.0, None), (midnight(2), midnight(5)))
        await assert_rollup_agrees(store, owners=("u2", "", "nobody"), windows=windows, most=2)
        assert {key[1] for key in await rollup_rows(database)} == {"u1", "u2", "u3", ""}
    finally:
        await database.close()


async def test_queries_the_rollup_cannot_answer_read_the_records(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        rows = records(120, seed=5)
        await seed(store, rows)
        unanswerable = [
            UsageQuery(since=midnight(1) + 3600, group_by=("day",)),  # not a midnight
            UsageQuery(until=midnight(3) - 0.5),
            UsageQuery(group_by=("metadata.user_id",)),  # a key the rollup does not keep
            UsageQuery(metadata=(("feature", "reply"),)),  # a metadata filter
            UsageQuery(since=float("nan")),
            UsageQuery(until=1e20),  # past year 9999
        ]
        for query in unanswerable:
            assert daily_window(query) is None, query
        # Answered from the records: the hour cuts a day in two.
        [part] = await store.totals(UsageQuery(since=midnight(1) + 3600, until=midnight(2)))
        expected = [r for r in rows if midnight(1) + 3600 <= r["created_at"] < midnight(2)]
        assert part["requests"] == len(expected) > 0
        [whole] = await store.totals(UsageQuery(since=midnight(1), until=midnight(2)))
        assert whole["requests"] == sum(r["day"] == "2026-11-29" for r in rows) > len(expected)
        by_user = await store.totals(UsageQuery(group_by=("metadata.user_id",)))
        assert sum(r["requests"] for r in by_user) == len(rows)
    finally:
        await database.close()


@pytest.mark.parametrize(
    ("since", "until", "answered"),
    [
        ("2026-11-02", "2026-12-02", True),  # the dashboard's 30 whole days
        ("2026-11-02", None, True),
        (None, None, True),
        ("1764547200", "1764633600", True),  # unix seconds at midnights
        ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00+00:00", True),
        ("2026-12-01T00:00:00+01:00", None, False),  # 23:00 UTC
        ("30d", None, False),  # now - 30 days: not a midnight
        ("2026-12-01T12:00:00", None, False),
    ],
)
def test_date_windows_fall_on_utc_midnights(
    since: str | None, until: str | None, answered: bool
) -> None:
    query = usage_query(since=since, until=until, group_by=["day", "metadata.feature"])
    assert (daily_window(query) is not None) is answered
    for group in ("model", "endpoint", "user", "key", "route"):
        grouped = usage_query(since=since, until=until, group_by=["day", group], owner="u1")
        assert (daily_window(grouped) is not None) is answered


def test_the_dashboards_windows_are_whole_days() -> None:
    from aiservice.api.dashboard.usage import GROUPS, UsageFilter

    days = UsageFilter(since="2026-11-02", until="2026-12-01").days()  # until: inclusive
    assert len(days) == 30 > DAYS
    # As usage_page asks: since the first day, until the day after the last.
    window = {"since": days[0].isoformat(), "until": (days[-1] + timedelta(days=1)).isoformat()}
    for group in GROUPS.values():
        for group_by in (["day", group], [group]):
            query = usage_query(group_by=group_by, **window)
            assert daily_window(query) == ("2026-11-02", "2026-12-02"), group_by
