"""The audit log's rows (store/audit.py) on SQLite and PostgreSQL: listed newest first, each
filter and the time range, `after` pages that neither skip nor repeat a row, has_more from one
row past the page, and no way to change or delete a row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiservice.store.audit import AuditQuery, AuditStore, UnknownAuditCursor
from aiservice.store.database import Database
from aiservice.store.tables import AuditEntry


@pytest.fixture
async def audit_store(store_url: str) -> AsyncIterator[AuditStore]:
    database = Database(store_url)
    try:
        yield AuditStore(database)
    finally:
        await database.close()


def entry(n: int, actor: str = "admin", action: str = "key.create", target: str = "") -> AuditEntry:
    return AuditEntry(
        id=f"audit_{n:04d}",
        created_at=1_700_000_000 + n,
        actor=actor,
        action=action,
        target=target or f"key_{n}",
        request_id=f"req_{n}",
        details={"n": n},
    )


async def ids(store: AuditStore, **query: Any) -> list[str]:
    return [row.id for row in (await store.list(AuditQuery(**query))).rows]


async def test_entries_are_listed_newest_first_as_written(audit_store: AuditStore) -> None:
    for n in range(3):
        await audit_store.add(entry(n))
    page = await audit_store.list(AuditQuery())
    assert [row.id for row in page.rows] == ["audit_0002", "audit_0001", "audit_0000"]
    assert page.has_more is False
    newest = page.rows[0]
    assert (newest.actor, newest.action, newest.target) == ("admin", "key.create", "key_2")
    assert (newest.created_at, newest.request_id, newest.details) == (
        1_700_000_002,
        "req_2",
        {"n": 2},
    )


async def test_each_filter_and_the_time_range_narrow_the_list(audit_store: AuditStore) -> None:
    await audit_store.add(entry(0, actor="admin", action="user.create", target="user_a"))
    await audit_store.add(entry(1, actor="user_b", action="key.create", target="key_x"))
    await audit_store.add(entry(2, actor="cli:ops", action="key.revoke", target="key_x"))
    await audit_store.add(entry(3, actor="admin", action="key.revoke", target="key_y"))
    assert await ids(audit_store, actor="admin") == ["audit_0003", "audit_0000"]
    assert await ids(audit_store, action="key.revoke") == ["audit_0003", "audit_0002"]
    assert await ids(audit_store, target="key_x") == ["audit_0002", "audit_0001"]
    assert await ids(audit_store, action="key.revoke", actor="cli:ops") == ["audit_0002"]
    assert await ids(audit_store, since=1_700_000_001, until=1_700_000_002) == [
        "audit_0002",
        "audit_0001",
    ]
    assert await ids(audit_store, since=1_700_000_004) == []
    assert await ids(audit_store, actor="nobody") == []


async def test_after_pages_through_every_row_once(audit_store: AuditStore) -> None:
    for n in range(7):
        await audit_store.add(entry(n, action="key.create" if n % 2 else "key.revoke"))
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await audit_store.list(AuditQuery(limit=3, after=after))
        seen += [row.id for row in page.rows]
        pages += 1
        if not page.has_more:
            break
        after = page.rows[-1].id
    assert seen == [f"audit_{n:04d}" for n in reversed(range(7))]
    assert pages == 3  # 3 + 3 + 1: the last page is short and says there is no more
    # A filter and a cursor together: the rows past the cursor that match.
    assert await ids(audit_store, action="key.create", after="audit_0005") == [
        "audit_0003",
        "audit_0001",
    ]
    # A full last page: has_more is False without an empty page after it.
    exact = await audit_store.list(AuditQuery(limit=7))
    assert len(exact.rows) == 7 and exact.has_more is False


async def test_an_unknown_cursor_is_refused(audit_store: AuditStore) -> None:
    await audit_store.add(entry(0))
    with pytest.raises(UnknownAuditCursor):
        await audit_store.list(AuditQuery(after="audit_none"))


def test_the_store_can_only_add_and_list() -> None:
    # Append-only by construction: nothing here updates or deletes a row.
    public = {name for name in vars(AuditStore) if not name.startswith("_")}
    assert public == {"add", "list"}
