"""Retention: deleting what outlived its kind's retention or its own expiry, in short
transactions (PostgreSQL holds each deleted row's lock until its transaction commits).

A kind is deleted `chunk` rows at a time by primary key: first the rows past their own
`expires_at` (an index range), then the rows older than the kind's cut-off, found by walking
the table in `seq` order from its oldest row. Rows are inserted in about creation order, so
the walk stops at the first page whose last row is younger than the cut-off instead of reading
the whole table. What hangs on a row (metadata pairs, items, events, lines, file chunks) goes
first, at most `chunk` rows per transaction too: a batch may have 50,000 lines, a conversation
any number of items. Jobs still running are never deleted; they wait for their end.

Usage records are deleted together with what they add up to in the daily rollup
(usage_daily.delete_records): its days wholly past the cut-off go, the cut-off day keeps the
sums of the records left.

On PostgreSQL one process purges at a time (`purge_turn`): several workers on one database
would otherwise fight over the same rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, text, tuple_

from aiservice.store.analyses import RUNNING as ANALYSES_RUNNING
from aiservice.store.batch_status import FINAL as BATCHES_FINAL
from aiservice.store.database import Database
from aiservice.store.files import ABANDONED_AFTER_S
from aiservice.store.response_status import UNFINISHED
from aiservice.store.tables import (
    Base,
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
from aiservice.store.usage_daily import delete_records

Condition = ColumnElement[bool]
MAX_CHUNK = 1000
# pg_try_advisory_lock's key for the purge: any constant no other lock of ours uses.
PURGE_LOCK_KEY = 0x6169_7365_7276_7031  # "aiservp1"
# Files of the Batch API: a batch's input (`batch`) and its output and error files.
BATCH_FILE_PURPOSES = ("batch", "batch_output")


@dataclass(frozen=True, slots=True)
class Dependent:
    """Rows of another table that belong to a purged row, deleted before it."""

    table: type[Base]
    parent_column: Any  # the dependent's column that names its row
    parent_key: str  # which of the row's columns it names: "seq" or "id"
    key: tuple[Any, ...]  # the dependent's primary key


@dataclass(frozen=True, slots=True)
class PurgeKind:
    """One kind of stored row, as retention deletes it."""

    name: str  # the `kind` label of the metric and the purge's counts
    table: Any
    dependents: tuple[Dependent, ...] = ()
    expires: bool = False  # has an `expires_at` of its own
    # Rows that may be deleted at all (a job that has ended); None: every row.
    ended: Condition | None = None


KINDS = {
    kind.name: kind
    for kind in (
        PurgeKind(
            "chat_completions",
            StoredCompletion,
            (
                Dependent(
                    CompletionMetadata,
                    CompletionMetadata.completion_seq,
                    "seq",
                    (CompletionMetadata.completion_seq, CompletionMetadata.key),
                ),
            ),
            expires=True,
        ),
        PurgeKind(
            "responses",
            StoredResponse,
            (
                # No foreign key here: the item index only names the response.
                Dependent(ResponseItem, ResponseItem.response_id, "id", (ResponseItem.seq,)),
                Dependent(
                    ResponseEvent,
                    ResponseEvent.response_id,
                    "id",
                    (ResponseEvent.response_id, ResponseEvent.sequence_number),
                ),
            ),
            expires=True,
            ended=StoredResponse.status.not_in(UNFINISHED),
        ),
        PurgeKind(
            "conversations",
            Conversation,
            (
                Dependent(
                    ConversationItem,
                    ConversationItem.conversation_seq,
                    "seq",
                    (ConversationItem.seq,),
                ),
            ),
        ),
        PurgeKind(
            "document_analyses",
            DocumentAnalysis,
            ended=DocumentAnalysis.status.not_in(ANALYSES_RUNNING),
        ),
        PurgeKind(
            "batches",
            StoredBatch,
            (
                Dependent(
                    BatchLine, BatchLine.batch_seq, "seq", (BatchLine.batch_seq, BatchLine.line)
                ),
            ),
            ended=StoredBatch.status.in_(BATCHES_FINAL),
        ),
        PurgeKind(
            "files",
            StoredFile,
            (
                Dependent(
                    FileChunk, FileChunk.file_seq, "seq", (FileChunk.file_seq, FileChunk.position)
                ),
            ),
            expires=True,
        ),
        PurgeKind("usage_records", UsageRecord),
    )
}


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Unix times: a row of a kind created before its kind's cut-off is purged. None: the kind
    has no age limit. `files` applies to uploads other than the Batch API's, whose files
    follow `batches`."""

    now: int
    chat_completions: float | None = None
    responses: float | None = None
    conversations: float | None = None
    document_analyses: float | None = None
    batches: float | None = None
    files: float | None = None
    usage_records: float | None = None


class RetentionStore:
    """Deletes rows past retention, kind by kind, `chunk` rows per transaction."""

    def __init__(self, database: Database, chunk: int = MAX_CHUNK):
        self._database = database
        self._sessions = database.sessions
        self._chunk = max(1, min(chunk, MAX_CHUNK))

    @asynccontextmanager
    async def purge_turn(self) -> AsyncIterator[bool]:
        """Whether this process purges now. On PostgreSQL, True for one process at a time: a
        session advisory lock, held on a connection of its own for the round (and dropped with
        that connection if the process dies). SQLite: always True (one file, one host)."""
        if self._database.dialect != "postgresql":
            yield True
            return
        async with self._database.engine.connect() as connection:
            lock = text("SELECT pg_try_advisory_lock(:key)")
            taken = bool(await connection.scalar(lock, {"key": PURGE_LOCK_KEY}))
            await connection.commit()  # a session lock: it outlives the transaction
            try:
                yield taken
            finally:
                if taken:
                    unlock = text("SELECT pg_advisory_unlock(:key)")
                    await connection.scalar(unlock, {"key": PURGE_LOCK_KEY})
                    await connection.commit()

    async def purge(self, name: str, cutoffs: Cutoffs) -> int:
        """Delete the rows of kind `name` past their expiry or their kind's cut-off; returns
        how many."""
        kind = KINDS[name]
        purged = 0
        if kind.expires:
            expired = and_(kind.table.expires_at.is_not(None), kind.table.expires_at <= cutoffs.now)
            purged += await self._purge_matching(kind, expired)
        old, walk_until = _aged(kind, cutoffs)
        if old is not None and walk_until is not None:
            purged += await self._purge_walking(kind, old, walk_until)
        return purged

    async def _purge_matching(self, kind: PurgeKind, condition: Condition) -> int:
        """Chunks of the rows matching `condition` (an indexed one), until none is left."""
        condition = _and_ended(kind, condition)
        purged = 0
        while True:
            async with self._sessions() as session:
                query = select(*_keys(kind)).where(condition).limit(self._chunk)
                rows = list(await session.execute(query))
            if not rows:
                return purged
            purged += await self._delete(kind, rows, condition)

    async def _purge_walking(self, kind: PurgeKind, condition: Condition, until: float) -> int:
        """The rows matching `condition` among those created before `until`, oldest first, a
        page of `chunk` rows by primary key at a time."""
        condition = _and_ended(kind, condition)
        table, purged, after = kind.table, 0, 0
        while True:
            async with self._sessions() as session:
                page = select(table.seq, _created_at(kind)).where(table.seq > after)
                bounds = list(await session.execute(page.order_by(table.seq).limit(self._chunk)))
                if not bounds:
                    return purged
                last_seq, last_created = bounds[-1]
                chosen = select(*_keys(kind)).where(
                    table.seq > after, table.seq <= last_seq, condition
                )
                rows = list(await session.execute(chosen))
            if rows:
                purged += await self._delete(kind, rows, condition)
            young = last_created is not None and last_created >= until
            if len(bounds) < self._chunk or young:
                return purged
            after = last_seq

    async def _delete(self, kind: PurgeKind, rows: Sequence[Any], condition: Condition) -> int:
        """Delete these rows (seq, id): their dependents first, each in transactions of at
        most `chunk` rows, then the rows themselves if they still match `condition`."""
        seqs = [row.seq for row in rows]
        for dependent in kind.dependents:
            parents = seqs if dependent.parent_key == "seq" else [row.id for row in rows]
            while await self._delete_dependents(dependent, parents) == self._chunk:
                pass
        async with self._sessions.begin() as session:
            chosen = and_(kind.table.seq.in_(seqs), condition)
            if kind.table is UsageRecord:  # and what they add up to in the daily rollup
                return await delete_records(session, chosen)
            return (await session.execute(delete(kind.table).where(chosen))).rowcount

    async def _delete_dependents(self, dependent: Dependent, parents: list[Any]) -> int:
        key = dependent.key[0] if len(dependent.key) == 1 else tuple_(*dependent.key)
        some = select(*dependent.key).where(dependent.parent_column.in_(parents))
        async with self._sessions.begin() as session:
            statement = delete(dependent.table).where(key.in_(some.limit(self._chunk)))
            return (await session.execute(statement)).rowcount


def _keys(kind: PurgeKind) -> tuple[Any, ...]:
    table = kind.table
    needs_id = any(dependent.parent_key == "id" for dependent in kind.dependents)
    return (table.seq, table.id) if needs_id else (table.seq,)


def _and_ended(kind: PurgeKind, condition: Condition) -> Condition:
    return condition if kind.ended is None else and_(condition, kind.ended)


def _created_at(kind: PurgeKind) -> Any:
    # A batch keeps its wire timestamps together, as OpenAI's object has them.
    if kind.table is StoredBatch:
        return StoredBatch.times["created_at"].as_integer()
    return kind.table.created_at


def _aged(kind: PurgeKind, cutoffs: Cutoffs) -> tuple[Condition | None, float | None]:
    """Which rows of the kind are too old, and up to when the walk must go to find them all
    (None, None: the kind has no age limit)."""
    if kind.table is not StoredFile:
        cutoff = getattr(cutoffs, kind.name)
        return (None, None) if cutoff is None else (_created_at(kind) < cutoff, cutoff)
    table = StoredFile
    batch_file = table.purpose.in_(BATCH_FILE_PURPOSES)
    # An upload whose writer died half-way is never complete: gone after an hour.
    abandoned_before = cutoffs.now - ABANDONED_AFTER_S
    conditions = [and_(table.complete.is_(False), table.created_at < abandoned_before)]
    for files_of, cutoff in ((batch_file, cutoffs.batches), (~batch_file, cutoffs.files)):
        if cutoff is not None:
            conditions.append(and_(files_of, table.created_at < cutoff))
    until = max(abandoned_before, cutoffs.batches or 0, cutoffs.files or 0)
    return or_(*conditions), until
