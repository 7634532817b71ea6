"""The store under the API, on SQLite and PostgreSQL: owners, expiry, migrations, the CLI,
and SQLite shared between processes.

Each parametrised test gets a fresh, migrated database of its own (`[sqlite]`: a file in its
tmp_path; `[postgres]`: a new database on the test server), so counts are exact.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import EllipsisType
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from openai.types.chat import ChatCompletion
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection

from aiservice.errors import NotFound
from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page
from aiservice.services.stored_completions import StoredCompletions
from aiservice.store.completions import CompletionStore, NewCompletion, UnknownCursor
from aiservice.store.database import SQLITE_FILE_NAME, Database
from aiservice.store.migrate import alembic_config, upgrade_database
from aiservice.store.retention import Cutoffs, RetentionStore
from aiservice.store.tables import Base, CompletionMetadata, StoredCompletion
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    assert_matches_schema,
    run_cli,
    run_in_thread,
)

MODEL = "smollm2-135m-instruct"
TABLES = {"chat_completions", "chat_completion_metadata"}
# The owner behind the master key: rows written as it are what the API's caller sees.
MASTER_KEY_OWNER = "admin"


def migrate(url: str) -> None:
    """Apply the migrations. Alembic runs its own event loop, so it gets a thread of its own
    (as in the server's lifespan) and pytest-asyncio's loop is left alone."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(upgrade_database, url).result()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()


def now() -> int:
    return int(time.time())


def new_completion(
    owner: str,
    metadata: dict[str, str] | None = None,
    *,
    expires_at: int | EllipsisType | None = ...,
    model: str = MODEL,
) -> NewCompletion:
    """A stored completion as the service would write it, expiring in an hour unless told
    otherwise (None: never); its response is a spec-valid body."""
    created = now()
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    response = ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=model,
        choices=[
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": "Hello.", "refusal": None},
            }
        ],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    ).model_dump(mode="json", exclude_unset=True)
    return NewCompletion(
        id=completion_id,
        owner=owner,
        model=model,
        created_at=created,
        expires_at=created + 3600 if expires_at is ... else expires_at,
        request={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi"}],
            "store": True,
        },
        response=response,
        metadata=metadata or {},
        prompt_tokens=3,
        completion_tokens=2,
    )


async def ids(store: CompletionStore, owner: str, at: int | None = None, **kw: Any) -> list[str]:
    """Every id the owner's list yields, page after page, in ascending order."""
    found: list[str] = []
    after: str | None = None
    while True:
        query = CompletionFilter(limit=50, order="asc", after=after, **kw)
        page = await store.list(owner, now() if at is None else at, query)
        found += [row.id for row in page.rows]
        if not page.has_more:
            return found
        after = found[-1]


async def all_ids(database: Database) -> set[str]:
    """Every completion in the table, expired or not, whoever owns it."""
    async with database.sessions() as session:
        return set(await session.scalars(select(StoredCompletion.id)))


async def metadata_row_count(database: Database) -> int:
    async with database.sessions() as session:
        return await session.scalar(select(func.count()).select_from(CompletionMetadata))


# -- owners --------------------------------------------------------------------------------


async def test_an_owner_never_sees_or_touches_another_owners_completions(store_url: str):
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    alices = [new_completion(alice, {"team": "red", "n": str(i)}) for i in range(3)]
    bobs = new_completion(bob, {"team": "blue"})
    async with open_database(store_url) as database:
        store = CompletionStore(database)
        for completion in [*alices, bobs]:
            await store.insert(completion)
        t = now()

        for completion in alices:
            assert await store.get(bob, completion.id, t) is None
            assert await store.replace_metadata(bob, completion.id, {"team": "blue"}, t) is None
            assert await store.delete(bob, completion.id, t) is False
            with pytest.raises(UnknownCursor):
                await store.list(
                    bob, t, CompletionFilter(limit=10, order="asc", after=completion.id)
                )
        assert await ids(store, bob) == [bobs.id]
        assert await ids(store, bob, metadata={"team": "red"}) == []
        assert await ids(store, bob, metadata={"team": "red", "n": "0"}) == []
        assert await ids(store, bob, model=MODEL) == [bobs.id]
        assert await ids(store, bob, metadata={"team": "blue"}) == [bobs.id]

        # The service on top answers "not found" for every route, messages included.
        service = StoredCompletions(store, retention_days=30)
        for call in (
            lambda: service.retrieve(bob, alices[0].id),
            lambda: service.update(bob, alices[0].id, MetadataUpdate(metadata={"x": "y"})),
            lambda: service.delete(bob, alices[0].id),
            lambda: service.messages(bob, alices[0].id, Page(limit=20, order="asc", after=None)),
        ):
            with pytest.raises(NotFound):
                await call()
        listed = await service.list(bob, CompletionFilter(metadata={"team": "red"}))
        assert listed["data"] == []

        # Alice's completions are all there, untouched, and hers alone.
        assert await ids(store, alice) == [c.id for c in alices]
        assert await ids(store, alice, metadata={"team": "red", "n": "1"}) == [alices[1].id]
        assert await ids(store, alice, metadata={"team": "blue"}) == []
        for completion in alices:
            row = await store.get(alice, completion.id, t)
            assert row is not None and row.metadata_ == completion.metadata
        messages = await service.messages(alice, alices[0].id, Page())
        assert [m["content"] for m in messages["data"]] == ["Hi"]
        # Bob's own writes work on his completion only.
        assert await store.replace_metadata(bob, bobs.id, {"team": "green"}, t) is not None
        assert await store.delete(bob, bobs.id, t) is True
        assert await ids(store, bob) == []
        assert await ids(store, alice) == [c.id for c in alices]


# -- expiry --------------------------------------------------------------------------------


async def test_expired_completions_are_invisible_and_purged(store_url: str):
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    t = now()
    tag = {"tag": "expiry"}
    long_gone = new_completion(owner, tag, expires_at=t - 86400)
    just_gone = new_completion(owner, tag, expires_at=t)  # expiring at `now` is expired
    live = new_completion(owner, tag, expires_at=t + 3600)
    forever = new_completion(owner, tag, expires_at=None)
    async with open_database(store_url) as database:
        store = CompletionStore(database)
        for completion in (long_gone, just_gone, live, forever):
            await store.insert(completion)

        for expired in (long_gone, just_gone):
            assert await store.get(owner, expired.id, t) is None
            assert await store.replace_metadata(owner, expired.id, {"a": "b"}, t) is None
            assert await store.delete(owner, expired.id, t) is False
        assert await ids(store, owner, t) == [live.id, forever.id]
        assert await ids(store, owner, t, metadata=tag) == [live.id, forever.id]
        assert await ids(store, owner, t, model=MODEL) == [live.id, forever.id]
        # Invisible is not gone: the rows wait for the purge.
        assert await all_ids(database) == {long_gone.id, just_gone.id, live.id, forever.id}

        retention = RetentionStore(database)
        assert await retention.purge("chat_completions", Cutoffs(now=t)) == 2
        assert await all_ids(database) == {live.id, forever.id}
        assert await metadata_row_count(database) == 2  # the purged rows' pairs went too
        assert await retention.purge("chat_completions", Cutoffs(now=t)) == 0

        # Much later, the live one has expired too; one without expiry never does.
        later = t + 10 * 365 * 86400
        assert await ids(store, owner, later) == [forever.id]
        assert await store.get(owner, forever.id, later) is not None
        assert await retention.purge("chat_completions", Cutoffs(now=later)) == 1
        assert await all_ids(database) == {forever.id}
        assert await store.get(owner, forever.id, later) is not None


async def test_purge_works_through_many_batches(store_url: str):
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    t = now()
    async with open_database(store_url) as database:
        store = CompletionStore(database)
        expired = [new_completion(owner, {"i": str(i)}, expires_at=t - i - 1) for i in range(7)]
        kept = new_completion(owner, {"i": "kept"}, expires_at=None)
        for completion in [*expired, kept]:
            await store.insert(completion)
        assert await RetentionStore(database, chunk=3).purge("chat_completions", Cutoffs(t)) == 7
        assert await all_ids(database) == {kept.id}
        assert await metadata_row_count(database) == 1


def test_purge_command_deletes_expired_rows_and_says_how_many(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    url = sqlite_url(home / SQLITE_FILE_NAME)
    migrate(url)
    owner = "cli-owner"
    expired = new_completion(owner, {"k": "v"}, expires_at=now() - 60)
    live = new_completion(owner, {"k": "v"})

    async def insert_both() -> None:
        async with open_database(url) as database:
            store = CompletionStore(database)
            await store.insert(expired)
            await store.insert(live)

    async def remaining() -> set[str]:
        async with open_database(url) as database:
            return await all_ids(database)

    run_in_thread(insert_both)
    assert run_in_thread(remaining) == {expired.id, live.id}

    result = run_cli("purge", home=home)
    assert result.returncode == 0, result.stderr
    assert "Purged 1 row(s) past their retention or expiry:" in result.stdout
    assert "  chat_completions: 1\n" in result.stdout
    assert "  responses: 0\n" in result.stdout
    assert run_in_thread(remaining) == {live.id}

    again = run_cli("purge", home=home)
    assert again.returncode == 0, again.stderr
    assert "Purged 0 row(s)" in again.stdout and "  chat_completions: 0\n" in again.stdout


# -- migrations ----------------------------------------------------------------------------


def head_revision(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def schema_state(url: str) -> tuple[set[str], str | None, list[Any]]:
    """The tables, the recorded revision, and how the schema differs from tables.py."""

    def read(connection: Connection) -> tuple[set[str], str | None, list[Any]]:
        context = MigrationContext.configure(connection)
        return (
            set(inspect(connection).get_table_names()),
            context.get_current_revision(),
            compare_metadata(context, Base.metadata),
        )

    async with open_database(url) as database, database.engine.connect() as connection:
        return await connection.run_sync(read)


def assert_upgrade_is_idempotent(home: Path, url: str, env: dict[str, str] | None = None):
    for _ in range(2):
        result = run_cli("db", "upgrade", home=home, env=env)
        assert result.returncode == 0, result.stderr
        assert "Database is up to date" in result.stdout
        tables, revision, differences = run_in_thread(lambda: schema_state(url))
        assert tables >= TABLES | {"alembic_version"}, tables
        assert revision == head_revision(url)
        assert differences == []  # the migrations build exactly what tables.py declares


def test_db_upgrade_creates_the_tables_on_a_fresh_sqlite_home(tmp_path: Path):
    home = tmp_path / "fresh-home"  # does not exist yet
    assert_upgrade_is_idempotent(home, sqlite_url(home / SQLITE_FILE_NAME))


def test_db_upgrade_creates_the_tables_on_a_fresh_postgres_database(
    tmp_path: Path, postgres_databases: PostgresDatabases
):
    url = postgres_databases.create()
    tables, _, _ = run_in_thread(lambda: schema_state(url))
    assert not tables & TABLES
    assert_upgrade_is_idempotent(tmp_path, url, env={"DATABASE_URL": url})


# -- SQLite shared by processes ------------------------------------------------------------


def test_the_servers_sqlite_file_is_in_wal_mode(sqlite_server: RunningServer):
    path = sqlite_server.home / SQLITE_FILE_NAME
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_every_sqlite_connection_gets_wal_and_a_busy_timeout(tmp_path: Path):
    url = sqlite_url(tmp_path / SQLITE_FILE_NAME)
    async with open_database(url) as database, database.sessions() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    with sqlite3.connect(tmp_path / SQLITE_FILE_NAME) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent


async def test_a_server_and_another_process_write_one_sqlite_file_together(
    sqlite_server: RunningServer,
):
    """The server stores completions while this process inserts rows into the same file for
    as long as the server is writing; every row of both ends up visible to both."""
    tag = {"test": uuid.uuid4().hex}
    requests = 4
    url = sqlite_url(sqlite_server.home / SQLITE_FILE_NAME)
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4,
        "store": True,
        "metadata": tag,
    }
    async with (
        open_database(url) as database,
        httpx.AsyncClient(
            base_url=sqlite_server.base_url,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=120,
        ) as client,
    ):
        store = CompletionStore(database)
        server_done = asyncio.Event()
        inserted: list[str] = []

        async def server_writes() -> list[str]:
            try:
                responses = await asyncio.gather(
                    *(client.post("/v1/chat/completions", json=body) for _ in range(requests))
                )
            finally:
                server_done.set()
            for response in responses:
                assert response.status_code == 200, response.text
            return [response.json()["id"] for response in responses]

        async def our_writes() -> None:
            # At least ten rows, and rows for as long as the server is still writing.
            while len(inserted) < 10 or not server_done.is_set():
                completion = new_completion(MASTER_KEY_OWNER, tag)
                await store.insert(completion)
                inserted.append(completion.id)

        served, _ = await asyncio.gather(server_writes(), our_writes())

        expected = set(served) | set(inserted)
        assert len(expected) == requests + len(inserted)
        in_order = await ids(store, MASTER_KEY_OWNER, metadata=tag)
        assert set(in_order) == expected and len(in_order) == len(expected)
        # The writes really overlapped: rows of ours landed between the server's first and last.
        positions = [in_order.index(completion_id) for completion_id in served]
        assert set(in_order[min(positions) : max(positions)]) & set(inserted), positions
        seen_by_server: list[str] = []
        after: dict[str, str] = {}
        while True:
            page = await client.get(
                "/v1/chat/completions",
                params={"metadata[test]": tag["test"], "limit": 100, **after},
            )
            assert page.status_code == 200, page.text
            assert_matches_schema(page.json(), "ChatCompletionList")
            seen_by_server += [c["id"] for c in page.json()["data"]]
            if not page.json()["has_more"]:
                break
            after = {"after": page.json()["last_id"]}
        assert set(seen_by_server) == expected
        assert len(seen_by_server) == len(expected)
