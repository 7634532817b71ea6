"""The dashboard's request log on SQLite and PostgreSQL: completions and responses merged
newest first, one page at a time, every row exactly once, filters and owners respected, and
never a count of the rows to paginate."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event

from aiservice.store.completions import CompletionStore, NewCompletion
from aiservice.store.database import Database
from aiservice.store.request_log import (
    COMPLETION,
    RESPONSE,
    LogCursor,
    LogQuery,
    RequestLogStore,
)
from aiservice.store.tables import StoredResponse

BASE_TIME = 1_780_000_000
_clock = itertools.count()


def _completion(owner: str, created_at: int, **fields: Any) -> NewCompletion:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    return NewCompletion(
        id=completion_id,
        owner=owner,
        model=fields.get("model", "model-a"),
        created_at=created_at,
        expires_at=None,
        request={"messages": [{"role": "user", "content": "hi"}]},
        response={"id": completion_id, "choices": []},
        metadata=fields.get("metadata", {}),
        prompt_tokens=3,
        completion_tokens=2,
        key_id=fields.get("key_id"),
        request_id=f"req_{uuid.uuid4().hex}",
    )


def _response(owner: str, created_at: int, **fields: Any) -> StoredResponse:
    response_id = f"resp_{uuid.uuid4().hex}"
    return StoredResponse(
        id=response_id,
        owner=owner,
        model=fields.get("model", "model-a"),
        status=fields.get("status", "completed"),
        background=False,
        created_at=created_at,
        expires_at=None,
        request={},
        input_items=[],
        response={"id": response_id, "metadata": fields.get("metadata", {})},
        input_tokens=4,
        output_tokens=5,
        attempts=0,
        key_id=fields.get("key_id"),
    )


async def _seed(database: Database, rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Rows of (kind, owner, fields) written in this order, one second apart unless a row
    says when it was made (`created_at`); their ids."""
    completions, ids = CompletionStore(database), []
    for kind, owner, fields in rows:
        created_at = fields.pop("created_at", None) or BASE_TIME + next(_clock)
        if kind == COMPLETION:
            new = _completion(owner, created_at, **fields)
            await completions.insert(new)
            ids.append(new.id)
        else:
            row = _response(owner, created_at, **fields)
            async with database.sessions.begin() as session:
                session.add(row)
            ids.append(row.id)
    return ids


async def _every_page(store: RequestLogStore, **query: Any) -> list[list[str]]:
    pages, cursor = [], LogCursor()
    while True:
        page = await store.page(LogQuery(cursor=cursor, **query))
        pages.append([row.id for row in page.rows])
        if page.next is None:
            return pages
        cursor = page.next


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    # In the test's own event loop: the pools it opens are closed in that loop.
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()


async def test_pages_merge_both_kinds_newest_first_each_row_once(store_url: str) -> None:
    async with _opened(store_url) as database:
        # Interleaved: a response every third row, two owners.
        rows = [
            (RESPONSE if index % 3 == 0 else COMPLETION, "user_a" if index % 2 else "user_b", {})
            for index in range(23)
        ]
        ids = await _seed(database, rows)
        store = RequestLogStore(database)
        pages = await _every_page(store, owner=None, limit=5)
        assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
        assert [row_id for page in pages for row_id in page] == list(reversed(ids))
        own = await _every_page(store, owner="user_a", limit=4)
        expected = [row_id for row_id, row in zip(ids, rows, strict=True) if row[1] == "user_a"]
        assert [row_id for page in own for row_id in page] == list(reversed(expected))


async def test_a_last_full_page_says_there_is_no_next_one(store_url: str) -> None:
    async with _opened(store_url) as database:
        await _seed(database, [(COMPLETION, "user_a", {})] * 3 + [(RESPONSE, "user_a", {})] * 3)
        pages = await _every_page(RequestLogStore(database), owner="user_a", limit=6)
        assert [len(page) for page in pages] == [6]


async def test_filters_by_model_metadata_key_status_kind_and_time(store_url: str) -> None:
    async with _opened(store_url) as database:
        rows = [
            (
                COMPLETION,
                "user_a",
                {"model": "model-b", "metadata": {"feature": "reply", "t": "1"}},
            ),
            (COMPLETION, "user_a", {"metadata": {"feature": "reply", "t": "2"}, "key_id": "key_1"}),
            (COMPLETION, "user_b", {"metadata": {"feature": "reply", "t": "1"}}),
            (RESPONSE, "user_a", {"status": "failed", "metadata": {"feature": "reply"}}),
            (RESPONSE, "user_a", {"model": "model-b", "key_id": "key_1"}),
        ]
        ids = await _seed(database, rows)
        store = RequestLogStore(database)

        async def found(**query: Any) -> set[str]:
            pages = await _every_page(store, **({"owner": None} | query))
            return {row_id for page in pages for row_id in page}

        assert await found(model="model-b") == {ids[0], ids[4]}
        assert await found(metadata=(("feature", "reply"),)) == {ids[0], ids[1], ids[2], ids[3]}
        # Several pairs: all must match; owner and metadata together.
        assert await found(metadata=(("feature", "reply"), ("t", "1"))) == {ids[0], ids[2]}
        assert await found(owner="user_a", metadata=(("t", "1"),)) == {ids[0]}
        assert await found(metadata=(("t", "nothing"),)) == set()
        assert await found(key_id="key_1") == {ids[1], ids[4]}
        assert await found(status="failed") == {ids[3]}
        assert await found(status="completed", kind=COMPLETION) == {ids[0], ids[1], ids[2]}
        assert await found(kind=RESPONSE) == {ids[3], ids[4]}
        everything = await store.page(LogQuery(owner=None, limit=50))
        first = min(row.created_at for row in everything.rows)  # ids[0]'s; one second apart
        assert await found(since=first + 1, until=first + 3) == {ids[1], ids[2]}


async def test_no_statement_counts_rows_without_a_bound(store_url: str) -> None:
    async with _opened(store_url) as database:
        await _seed(database, [(COMPLETION, "user_a", {"metadata": {"a": "1", "b": "2"}})] * 4)
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement.lower())

        event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
        store = RequestLogStore(database)
        await _every_page(store, owner=None, limit=2, metadata=(("a", "1"), ("b", "2")))
        await _every_page(store, owner="user_a", limit=2)
        counting = [statement for statement in statements if "count(" in statement]
        # Only the probe that picks the rarest metadata pair counts, and up to a limit.
        assert counting and all("limit" in statement for statement in counting)
        assert all(
            "limit" in statement for statement in statements if "from chat_completions" in statement
        )


async def test_a_row_stored_after_newer_ones_is_still_shown_once(store_url: str) -> None:
    """A slow request is stored after requests that began later: it still appears, once,
    wherever its creation time puts it among the pages."""
    async with _opened(store_url) as database:
        start = BASE_TIME + 10_000 + next(_clock) * 100
        rows: list[tuple[str, str, dict[str, Any]]] = [
            (COMPLETION if i % 2 else RESPONSE, "user_a", {"created_at": start + i})
            for i in range(12)
        ]
        rows.insert(9, (COMPLETION, "user_a", {"created_at": start - 50}))  # began first
        ids = await _seed(database, rows)
        for limit in (2, 3, 5):
            pages = await _every_page(RequestLogStore(database), owner="user_a", limit=limit)
            shown = [row_id for page in pages for row_id in page]
            assert sorted(shown) == sorted(ids), limit


async def test_date_filters_find_the_rows_of_their_days_only(store_url: str) -> None:
    async with _opened(store_url) as database:
        day = 86_400
        start = BASE_TIME + 50 * day
        rows = [
            (COMPLETION if i % 3 else RESPONSE, "user_a", {"created_at": start + i * day // 2})
            for i in range(40)
        ]
        ids = await _seed(database, rows)
        store = RequestLogStore(database)
        since, until = start + 5 * day, start + 9 * day
        pages = await _every_page(store, owner=None, since=since, until=until, limit=4)
        made = [start + i * day // 2 for i in range(40)]
        expected = {ids[i] for i in range(40) if since <= made[i] < until}
        assert {row_id for page in pages for row_id in page} == expected
        assert len(expected) == 8
