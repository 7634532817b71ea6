"""The retention purge on SQLite and PostgreSQL: each kind's rows older than its retention go
with everything that hangs on them, younger ones and running jobs stay, kinds without a limit
are kept, a row's own expiry still applies, deletes come in chunks of at most `chunk` rows,
and on PostgreSQL one process purges at a time.

Each test gets a fresh database of its own (`store_url`), so counts are exact.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event

from aiservice.store.database import Database
from aiservice.store.retention import Cutoffs, RetentionStore
from retention_support import (
    DAY,
    TABLES,
    add_analysis,
    add_batch,
    add_completion,
    add_conversation,
    add_file,
    add_response,
    counts,
    seed_each_kind,
)

OWNER = "owner-retention"
KINDS = list(TABLES)
EMPTY = {table.__tablename__: 0 for tables in TABLES.values() for table in tables}


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()


def days_ago(now: float, days: float) -> float:
    return now - days * DAY


def cutoffs_of(now: float, **days: int) -> Cutoffs:
    return Cutoffs(now=int(now), **{kind: days_ago(now, d) for kind, d in days.items()})


async def purge_all(retention: RetentionStore, cutoffs: Cutoffs) -> dict[str, int]:
    return {kind: await retention.purge(kind, cutoffs) for kind in KINDS}


async def test_each_kind_older_than_its_retention_goes_with_what_hangs_on_it(store_url: str):
    now = time.time()
    async with open_database(store_url) as database:
        await seed_each_kind(database, OWNER, dict.fromkeys(KINDS, 40))  # too old
        await seed_each_kind(database, OWNER, dict.fromkeys(KINDS, 20))  # within 30 days
        before = await counts(database)
        purged = await purge_all(
            RetentionStore(database), cutoffs_of(now, **dict.fromkeys(KINDS, 30))
        )
        assert purged == dict.fromkeys(KINDS, 1)
        # Half of every table is left: the young rows and their own dependents.
        assert await counts(database) == {table: count // 2 for table, count in before.items()}
        assert all(count > 0 for count in before.values()), before


async def test_kinds_without_an_age_limit_keep_their_old_rows(store_url: str):
    now = time.time()
    async with open_database(store_url) as database:
        await seed_each_kind(database, OWNER, dict.fromkeys(KINDS, 3650))
        before = await counts(database)
        # Conversations and usage records kept by default: no cut-off at all.
        cutoffs = cutoffs_of(now, chat_completions=30, responses=30, batches=30)
        purged = await purge_all(RetentionStore(database), cutoffs)
        assert purged == {
            **dict.fromkeys(KINDS, 0),
            "chat_completions": 1,
            "responses": 1,
            "batches": 1,
        }
        after = await counts(database)
        for kind in ("conversations", "document_analyses", "files", "usage_records"):
            for table in TABLES[kind]:
                assert after[table.__tablename__] == before[table.__tablename__], table


async def test_a_lowered_retention_applies_to_rows_stored_with_a_later_expiry(store_url: str):
    now = time.time()
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            # Stored 10 days ago under a 30-day retention, which is now 7 days.
            created = days_ago(now, 10)
            await add_completion(session, OWNER, created, int(created + 30 * DAY))
            await add_completion(session, OWNER, days_ago(now, 1), int(now + 29 * DAY))
        retention = RetentionStore(database)
        assert await retention.purge("chat_completions", cutoffs_of(now, chat_completions=7)) == 1
        assert await counts(database) == {
            **EMPTY,
            "chat_completions": 1,
            "chat_completion_metadata": 1,
        }


async def test_a_rows_own_expiry_applies_within_a_longer_retention(store_url: str):
    now = time.time()
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            await add_completion(session, OWNER, days_ago(now, 2), expires_at=int(now) - 1)
            await add_response(session, OWNER, days_ago(now, 2), expires_at=int(now) - 1)
            await add_file(session, OWNER, days_ago(now, 2), expires_at=int(now) - 1)
            await add_file(session, OWNER, days_ago(now, 2), expires_at=int(now) + 60)
        # No age limit anywhere: the expired rows go all the same.
        purged = await purge_all(RetentionStore(database), Cutoffs(now=int(now)))
        assert purged == {
            **dict.fromkeys(KINDS, 0),
            "chat_completions": 1,
            "responses": 1,
            "files": 1,
        }
        assert await counts(database) == {**EMPTY, "files": 1, "file_chunks": 2}


async def test_jobs_still_running_wait_for_their_end(store_url: str):
    now = time.time()
    old = days_ago(now, 90)
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            for status in ("queued", "in_progress"):
                await add_response(session, OWNER, old, status=status, expires_at=int(old))
                await add_analysis(session, OWNER, old, status=status)
            for status in ("validating", "in_progress", "finalizing", "cancelling"):
                await add_batch(session, OWNER, old, status=status)
            for status in ("failed", "expired", "cancelled"):
                await add_batch(session, OWNER, old, status=status)
            await add_response(session, OWNER, old, status="failed")
            await add_analysis(session, OWNER, old, status="failed")
        cutoffs = cutoffs_of(now, responses=30, document_analyses=30, batches=30)
        purged = await purge_all(RetentionStore(database), cutoffs)
        assert purged == {
            **dict.fromkeys(KINDS, 0),
            "responses": 1,
            "document_analyses": 1,
            "batches": 3,
        }
        left = await counts(database)
        assert (left["responses"], left["document_analyses"], left["batches"]) == (2, 2, 4)
        assert left["batch_lines"] == 4 * 3 and left["response_items"] == 2 * 2


async def test_batch_files_follow_the_batches_retention_other_uploads_their_own(
    store_url: str,
):
    now = time.time()
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            for purpose in ("batch", "batch_output"):
                await add_file(session, OWNER, days_ago(now, 40), purpose=purpose)
                await add_file(session, OWNER, days_ago(now, 20), purpose=purpose)
            await add_file(session, OWNER, days_ago(now, 400), purpose="user_data")
            # An upload whose writer died: gone after an hour, whatever the retention.
            await add_file(session, OWNER, now - 7200, complete=False)
            await add_file(session, OWNER, now - 60, complete=False)
        retention = RetentionStore(database)
        batches_only = cutoffs_of(now, batches=30)
        assert await retention.purge("files", batches_only) == 3
        assert (await counts(database))["files"] == 4
        with_files = cutoffs_of(now, batches=30, files=365)
        assert await retention.purge("files", with_files) == 1
        left = await counts(database)
        assert (left["files"], left["file_chunks"]) == (3, 6)


class DeleteSizes:
    """Every DELETE the database ran, by table, with the rows it deleted."""

    def __init__(self, database: Database):
        self.sizes: dict[str, list[int]] = {}
        event.listen(database.engine.sync_engine, "after_cursor_execute", self._seen)

    def _seen(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        if words[:2] == ["DELETE", "FROM"]:
            self.sizes.setdefault(words[2].strip('"'), []).append(cursor.rowcount)


async def test_more_rows_than_a_chunk_are_deleted_a_chunk_at_a_time(store_url: str):
    now = time.time()
    chunk = 10
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            for age in [40] * 35 + [1] * 10:  # 35 past 30 days, 10 within
                await add_completion(session, OWNER, days_ago(now, age))
            # Far more dependents than a chunk, on a single row.
            await add_batch(session, OWNER, days_ago(now, 40), lines=25)
            await add_conversation(session, OWNER, days_ago(now, 40), items=23)
        deletes = DeleteSizes(database)
        retention = RetentionStore(database, chunk=chunk)
        cutoffs = cutoffs_of(now, chat_completions=30, batches=30, conversations=30)
        assert await retention.purge("chat_completions", cutoffs) == 35
        assert await retention.purge("batches", cutoffs) == 1
        assert await retention.purge("conversations", cutoffs) == 1
        left = await counts(database)
        assert left["chat_completions"] == left["chat_completion_metadata"] == 10
        assert left["batch_lines"] == left["conversation_items"] == 0
        sizes = deletes.sizes
        assert sum(sizes["chat_completions"]) == 35 and max(sizes["chat_completions"]) <= chunk
        assert sizes["batch_lines"][:3] == [10, 10, 5]
        assert sum(sizes["conversation_items"]) == 23
        assert all(size <= chunk for table in sizes.values() for size in table), sizes


async def test_the_walk_stops_at_the_first_page_of_young_rows(store_url: str):
    """Rows come in creation order: once a page ends with a young row the rest are young,
    so a purge reads a page or two, not the whole table."""
    now = time.time()
    async with open_database(store_url) as database:
        async with database.sessions.begin() as session:
            for _ in range(5):
                await add_completion(session, OWNER, days_ago(now, 40))
            for _ in range(50):
                await add_completion(session, OWNER, days_ago(now, 1))
        pages: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("SELECT") and "ORDER BY chat_completions.seq" in statement:
                pages.append(statement)

        event.listen(database.engine.sync_engine, "after_cursor_execute", seen)
        retention = RetentionStore(database, chunk=10)
        assert await retention.purge("chat_completions", cutoffs_of(now, chat_completions=30)) == 5
        assert len(pages) == 1, pages
        assert (await counts(database))["chat_completions"] == 50


async def test_one_process_purges_a_postgres_database_at_a_time(store_url: str):
    async with open_database(store_url) as first, open_database(store_url) as second:
        async with RetentionStore(first).purge_turn() as ours:
            assert ours
            async with RetentionStore(second).purge_turn() as theirs:
                # SQLite: one file on one host, no lock taken.
                assert theirs is (first.dialect != "postgresql")
        async with RetentionStore(second).purge_turn() as theirs:
            assert theirs  # released with the first round
