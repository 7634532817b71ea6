"""The daily usage rollup follows every other change to the usage records, on each backend:
an erasure's pseudonyms (an account's owner, a "feature" value), the retention purge (whole
days and the part of the cut-off day it deletes), and the migration that builds it from the
records already there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select

from aiservice.store.database import SQLITE_FILE_NAME, Database
from aiservice.store.migrate import alembic_config, upgrade_database
from aiservice.store.retention import Cutoffs, RetentionStore
from aiservice.store.subject_rows import Cursor, pseudonymise_usage
from aiservice.store.subjects import Subject
from aiservice.store.tables import UsageDaily, UsageRecord
from aiservice.store.usage import UsageQuery, UsageStore
from support import PostgresDatabases
from usage_daily_support import (
    assert_rollup_agrees,
    assert_rollup_is_exact,
    day_of,
    midnight,
    records,
    rollup_rows,
    seed,
)

PSEUDONYM = "erased_0123456789abcdef"
WINDOWS = ((0.0, None), (midnight(1), midnight(4)), (midnight(2), None))


async def erase(database: Database, subject: Subject, limit: int = 17) -> int:
    """Pseudonymise the subject's usage rows, `limit` per transaction, as an erasure does."""
    cursor, done = Cursor(), 0
    while True:
        async with database.sessions.begin() as session:
            count = await pseudonymise_usage(session, subject, PSEUDONYM, limit, cursor)
        if not count:
            return done
        done += count


async def test_an_accounts_erasure_moves_its_sums_to_the_pseudonym(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        rows = records(250, seed=3)
        await seed(store, rows)
        [before] = await store.totals(UsageQuery())
        theirs = await store.totals(UsageQuery(owner="u1", group_by=("day", "model")))

        assert await erase(database, Subject(kind="account", owner="u1")) == sum(
            r["owner"] == "u1" for r in rows
        )
        assert await store.totals(UsageQuery()) == [before]  # billing totals do not move
        assert await store.totals(UsageQuery(owner="u1")) == []
        assert await store.totals(UsageQuery(owner=PSEUDONYM, group_by=("day", "model"))) == theirs
        owners = {key[1] for key in await rollup_rows(database)}
        assert "u1" not in owners and PSEUDONYM in owners
        await assert_rollup_agrees(store, owners=(None, PSEUDONYM, "u2"), windows=WINDOWS, most=3)
        await assert_rollup_is_exact(database)
    finally:
        await database.close()


async def test_a_feature_values_erasure_moves_its_sums_and_others_change_nothing(
    store_url: str,
) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        rows = records(250, seed=4)
        await seed(store, rows)
        unmoved = await rollup_rows(database)
        # An end user, and a metadata key the rollup does not keep: its tuples stay as they are.
        assert await erase(database, Subject(kind="user", user="end-1")) > 0
        assert await erase(database, Subject(kind="metadata", key="user_id", value="end-2")) > 0
        assert await rollup_rows(database) == unmoved

        # "feature" as a privacy subject key: within one account, then everyone's.
        within = Subject(kind="metadata", owner="u2", key="feature", value="triage")
        assert await erase(database, within) == sum(
            r["owner"] == "u2" and r["metadata"].get("feature") == "triage" for r in rows
        )
        assert await erase(database, Subject(kind="metadata", key="feature", value="reply")) > 0
        features = await store.totals(UsageQuery(group_by=("metadata.feature",)))
        assert "reply" not in {r["metadata.feature"] for r in features}
        assert {"triage", PSEUDONYM} <= {r["metadata.feature"] for r in features}
        await assert_rollup_agrees(store, owners=(None, "u2"), windows=WINDOWS, most=3)
        await assert_rollup_is_exact(database)
    finally:
        await database.close()


async def test_retention_takes_the_purged_records_from_the_rollup(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        # In about creation order, as the ledger writes them (the purge's walk counts on it).
        rows = sorted(records(300, seed=9), key=lambda r: r["created_at"])
        await seed(store, rows)
        cutoff = midnight(2) + 12 * 3600  # noon: the cut-off day is purged in part
        purged = await RetentionStore(database, chunk=23).purge(
            "usage_records", Cutoffs(now=int(midnight(6)), usage_records=cutoff)
        )
        kept = [r for r in rows if r["created_at"] >= cutoff]
        assert purged == len(rows) - len(kept)

        days = {key[0] for key in await rollup_rows(database)}
        assert min(days) == day_of(cutoff)  # the days wholly past are gone
        by_day = await store.totals(UsageQuery(group_by=("day",)))
        assert by_day[0]["day"] == day_of(cutoff)
        assert by_day[0]["requests"] == sum(r["day"] == day_of(cutoff) for r in kept) > 0
        await assert_rollup_agrees(store, windows=WINDOWS, most=3)
        await assert_rollup_is_exact(database)

        everything = Cutoffs(now=int(midnight(40)), usage_records=midnight(30))
        assert await RetentionStore(database).purge("usage_records", everything) == len(kept)
        assert await rollup_rows(database) == {}
        assert await store.totals(UsageQuery(since=midnight(0), group_by=("day",))) == []
    finally:
        await database.close()


@pytest.fixture(params=["sqlite", "postgres"])
def url_at_0014(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    """A database migrated up to the revision before the rollup."""
    url = (
        f"sqlite+aiosqlite:///{tmp_path / SQLITE_FILE_NAME}"
        if request.param == "sqlite"
        else postgres_databases.create()
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, alembic_config(url), "0014").result()
    return url


async def test_the_migration_builds_the_rollup_from_the_records_there(url_at_0014: str) -> None:
    rows = records(260, seed=12)
    database = Database(url_at_0014)
    try:
        async with database.sessions.begin() as session:  # the records of an older version
            await session.execute(insert(UsageRecord.__table__), rows)
    finally:
        await database.close()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(upgrade_database, url_at_0014).result()

    database = Database(url_at_0014)
    try:
        store = UsageStore(database)
        async with database.sessions() as session:
            assert len(list(await session.scalars(select(UsageDaily)))) > 0
        [total] = await store.totals(UsageQuery())
        assert total["requests"] == len(rows)
        await assert_rollup_agrees(store, windows=WINDOWS, most=3)
        await assert_rollup_is_exact(database)
        await store.insert_many(records(10, seed=13, prefix="new"))  # and kept from then on
        [after] = await store.totals(UsageQuery())
        assert after["requests"] == len(rows) + 10
        await assert_rollup_is_exact(database)
    finally:
        await database.close()
