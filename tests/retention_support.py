"""Rows of every kind the retention purge deletes, written straight into a database with the
creation time a test needs (a server cannot be made to store something 40 days old), and
counts of what is left of them, dependents included."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select

from aiservice.store.database import Database
from aiservice.store.tables import (
    BatchLine,
    CompletionMetadata,
    Conversation,
    ConversationItem,
    DocumentAnalysis,
    FileChunk,
    ResponseEvent,
    ResponseItem,
    StoredBatch,
    StoredCompletion,
    StoredFile,
    StoredResponse,
    UsageRecord,
)
from aiservice.store.usage_daily import insert_records
from support import run_in_thread

DAY = 86400
# Each kind's main table, and the tables of what hangs on its rows.
TABLES = {
    "chat_completions": (StoredCompletion, CompletionMetadata),
    "responses": (StoredResponse, ResponseItem, ResponseEvent),
    "conversations": (Conversation, ConversationItem),
    "document_analyses": (DocumentAnalysis,),
    "batches": (StoredBatch, BatchLine),
    "files": (StoredFile, FileChunk),
    "usage_records": (UsageRecord,),
}


@dataclass
class Seeded:
    """What a seeding wrote: the main rows' ids by kind (usage records: their record_id)."""

    ids: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in TABLES})


def _id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(10)}"


async def add_completion(
    session: Any, owner: str, created_at: float, expires_at: int | None = None
) -> str:
    completion_id = _id("chatcmpl-")
    seq = await session.scalar(
        insert(StoredCompletion)
        .values(
            id=completion_id,
            owner=owner,
            model="m",
            created_at=int(created_at),
            expires_at=expires_at,
            request={"messages": [{"role": "user", "content": "personal text"}]},
            response={"id": completion_id},
            metadata_={"tag": "retention"},
            prompt_tokens=3,
            completion_tokens=2,
        )
        .returning(StoredCompletion.seq)
    )
    await session.execute(
        insert(CompletionMetadata).values(
            completion_seq=seq, key="tag", value="retention", owner=owner
        )
    )
    return completion_id


async def add_response(
    session: Any,
    owner: str,
    created_at: float,
    *,
    status: str = "completed",
    expires_at: int | None = None,
    items: int = 2,
    events: int = 2,
) -> str:
    response_id = _id("resp_")
    await session.execute(
        insert(StoredResponse).values(
            id=response_id,
            owner=owner,
            model="m",
            status=status,
            background=status != "completed",
            created_at=int(created_at),
            expires_at=expires_at,
            request={"input": "personal text"},
            input_items=[],
            response={"id": response_id, "status": status, "output": []},
            input_tokens=3,
            output_tokens=2,
            attempts=0,
        )
    )
    if items:
        rows = [
            {"owner": owner, "item_id": _id("msg_"), "response_id": response_id}
            for _ in range(items)
        ]
        await session.execute(insert(ResponseItem), rows)
    if events:
        rows = [
            {"response_id": response_id, "sequence_number": n, "event": {"sequence_number": n}}
            for n in range(events)
        ]
        await session.execute(insert(ResponseEvent), rows)
    return response_id


async def add_conversation(session: Any, owner: str, created_at: float, items: int = 3) -> str:
    conversation_id = _id("conv_")
    seq = await session.scalar(
        insert(Conversation)
        .values(id=conversation_id, owner=owner, created_at=int(created_at), metadata_={})
        .returning(Conversation.seq)
    )
    if items:
        rows = [
            {"conversation_seq": seq, "item_id": f"msg_{n}", "item": {"content": "personal"}}
            for n in range(items)
        ]
        await session.execute(insert(ConversationItem), rows)
    return conversation_id


async def add_analysis(
    session: Any, owner: str, created_at: float, status: str = "completed"
) -> str:
    analysis_id = _id("analysis_")
    await session.execute(
        insert(DocumentAnalysis).values(
            id=analysis_id,
            owner=owner,
            principal={"owner": owner, "is_admin": False},
            model="m",
            name="contract.txt",
            status=status,
            created_at=int(created_at),
            chunks=["personal text"],
            jobs=[],
            attempts=0,
        )
    )
    return analysis_id


async def add_batch(
    session: Any, owner: str, created_at: float, *, status: str = "completed", lines: int = 3
) -> str:
    batch_id = _id("batch_")
    created = int(created_at)
    seq = await session.scalar(
        insert(StoredBatch)
        .values(
            id=batch_id,
            owner=owner,
            principal={"owner": owner, "is_admin": False},
            endpoint="/v1/chat/completions",
            input_file_id="file-input",
            completion_window="24h",
            status=status,
            times={"created_at": created, "expires_at": created + DAY},
            expires_at=created + DAY,
            attempts=0,
        )
        .returning(StoredBatch.seq)
    )
    if lines:
        rows = [
            {
                "batch_seq": seq,
                "line": n + 1,
                "custom_id": f"c{n}",
                "body": {"messages": "personal"},
                "state": "succeeded",
                "attempts": 1,
                "input_tokens": 1,
                "output_tokens": 1,
                "cached_tokens": 0,
            }
            for n in range(lines)
        ]
        await session.execute(insert(BatchLine), rows)
    return batch_id


async def add_file(
    session: Any,
    owner: str,
    created_at: float,
    *,
    purpose: str = "user_data",
    expires_at: int | None = None,
    complete: bool = True,
    chunks: int = 2,
) -> str:
    file_id = _id("file-")
    seq = await session.scalar(
        insert(StoredFile)
        .values(
            id=file_id,
            owner=owner,
            purpose=purpose,
            filename="notes.txt",
            bytes=chunks,
            created_at=int(created_at),
            expires_at=expires_at,
            complete=complete,
        )
        .returning(StoredFile.seq)
    )
    if chunks:
        rows = [{"file_seq": seq, "position": n, "data": b"x"} for n in range(chunks)]
        await session.execute(insert(FileChunk), rows)
    return file_id


async def add_usage(session: Any, owner: str, created_at: float) -> str:
    record_id = secrets.token_hex(16)
    row = {
        "record_id": record_id,
        "created_at": created_at,
        "day": time.strftime("%Y-%m-%d", time.gmtime(created_at)),
        "request_id": _id("req_"),
        "owner": owner,
        "route": "/v1/chat/completions",
        "background": False,
        "input_tokens": 3,
        "output_tokens": 2,
        "cost_usd": 0.0,
        "latency_ms": 1.0,
        "status_code": 200,
        "upstream_attempts": 0,
        "metadata": {},
    }
    await insert_records(session, [row])  # as the ledger writes them: the rollup too
    return record_id


ADDERS = {
    "chat_completions": add_completion,
    "responses": add_response,
    "conversations": add_conversation,
    "document_analyses": add_analysis,
    "batches": add_batch,
    "files": add_file,
    "usage_records": add_usage,
}


async def seed_each_kind(database: Database, owner: str, ages_days: dict[str, float]) -> Seeded:
    """One row (with its dependents) of each kind in `ages_days`, created that many days ago."""
    seeded = Seeded()
    now = time.time()
    async with database.sessions.begin() as session:
        for kind, age in ages_days.items():
            seeded.ids[kind].append(await ADDERS[kind](session, owner, now - age * DAY))
    return seeded


async def counts(database: Database) -> dict[str, int]:
    """Rows left in every table above, by table name."""
    found: dict[str, int] = {}
    async with database.sessions() as session:
        for tables in TABLES.values():
            for table in tables:
                query = select(func.count()).select_from(table)
                found[table.__tablename__] = int(await session.scalar(query) or 0)
    return found


def seed_in_thread(url: str, owner: str, ages_days: dict[str, float]) -> Seeded:
    """`seed_each_kind` from a synchronous test, on a database a server also uses."""

    async def seed() -> Seeded:
        database = Database(url)
        try:
            return await seed_each_kind(database, owner, ages_days)
        finally:
            await database.close()

    return run_in_thread(seed)


def ids_left(url: str, kind: str, ids: list[str]) -> set[str]:
    """Which of these main rows of `kind` are still in the database at `url`."""
    table = TABLES[kind][0]
    column = table.record_id if table is UsageRecord else table.id

    async def read() -> set[str]:
        database = Database(url)
        try:
            async with database.sessions() as session:
                return set(await session.scalars(select(column).where(column.in_(ids))))
        finally:
            await database.close()

    return run_in_thread(read)
