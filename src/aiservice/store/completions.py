"""Queries on stored chat completions. Every read and write is scoped to one owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from aiservice.store.database import Database
from aiservice.store.tables import CompletionMetadata, StoredCompletion

Order = Literal["asc", "desc"]

# A metadata filter of several pairs counts each pair's rows up to this many (an index-only
# scan of a few hundred microseconds at most) to pick the rarest pair to drive the list.
_SELECTIVITY_PROBE_CAP = 1000


@dataclass(frozen=True, slots=True)
class NewCompletion:
    id: str
    owner: str
    model: str
    created_at: int
    expires_at: int | None
    request: dict[str, Any]
    response: dict[str, Any]
    metadata: dict[str, str]
    prompt_tokens: int
    completion_tokens: int
    key_id: str | None = None  # the API key it was made with (None: a password or the master key)
    request_id: str | None = None  # the request's id, as its usage record has it


@dataclass(frozen=True, slots=True)
class CompletionPage:
    rows: list[StoredCompletion]
    has_more: bool


class CompletionQuery(Protocol):
    """Which completions to list, one page of them (services.queries.CompletionFilter)."""

    limit: int
    order: Order
    after: str | None
    model: str | None
    metadata: dict[str, str]


class UnknownCursor(LookupError):
    """`after` names no completion of this owner."""


class CompletionStore:
    """Stored chat completions on one database."""

    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def insert(self, completion: NewCompletion) -> None:
        """Write the completion and its metadata pairs in one transaction."""
        async with self._sessions.begin() as session:
            seq = await session.scalar(
                insert(StoredCompletion)
                .values(
                    id=completion.id,
                    owner=completion.owner,
                    model=completion.model,
                    created_at=completion.created_at,
                    expires_at=completion.expires_at,
                    request=completion.request,
                    response=completion.response,
                    metadata_=completion.metadata,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    key_id=completion.key_id,
                    request_id=completion.request_id,
                )
                .returning(StoredCompletion.seq)
            )
            await _insert_metadata(session, seq, completion.owner, completion.metadata)

    async def get(self, owner: str, completion_id: str, now: int) -> StoredCompletion | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(StoredCompletion).where(
                    *_visible(owner, now), StoredCompletion.id == completion_id
                )
            )

    async def list(self, owner: str, now: int, query: CompletionQuery) -> CompletionPage:
        """One page in insertion order. A metadata filter scans the index of its rarest pair,
        which already comes out in list order, and checks the other pairs per row on the same
        index (index-only) before reading the completion."""
        table = StoredCompletion
        select_rows = select(table).where(*_visible(owner, now))
        position: Any = table.seq
        async with self._sessions() as session:
            cursor = None
            if query.after is not None:
                cursor = await session.scalar(
                    select(table.seq).where(table.owner == owner, table.id == query.after)
                )
                if cursor is None:
                    raise UnknownCursor(query.after)
            pairs = list(query.metadata.items())
            if len(pairs) > 1:
                pairs = await _rarest_first(session, owner, pairs)
                if not pairs:
                    return CompletionPage([], has_more=False)
            if pairs:
                select_rows, position = _with_metadata(select_rows, owner, pairs)
            if query.model is not None:
                select_rows = select_rows.where(table.model == query.model)
            ascending = query.order == "asc"
            if cursor is not None:
                select_rows = select_rows.where(
                    position > cursor if ascending else position < cursor
                )
            select_rows = select_rows.order_by(position.asc() if ascending else position.desc())
            rows = list(await session.scalars(select_rows.limit(query.limit + 1)))
        return CompletionPage(rows[: query.limit], has_more=len(rows) > query.limit)

    async def replace_metadata(
        self, owner: str, completion_id: str, metadata: dict[str, str], now: int
    ) -> StoredCompletion | None:
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(StoredCompletion)
                .where(*_visible(owner, now), StoredCompletion.id == completion_id)
                .with_for_update()
            )
            if row is None:
                return None
            await session.execute(
                update(StoredCompletion)
                .where(StoredCompletion.seq == row.seq)
                .values(metadata_=metadata)
            )
            await session.execute(
                delete(CompletionMetadata).where(CompletionMetadata.completion_seq == row.seq)
            )
            await _insert_metadata(session, row.seq, owner, metadata)
            row.metadata_ = metadata
            return row

    async def delete(self, owner: str, completion_id: str, now: int) -> bool:
        async with self._sessions.begin() as session:
            seq = await session.scalar(
                select(StoredCompletion.seq).where(
                    *_visible(owner, now), StoredCompletion.id == completion_id
                )
            )
            if seq is None:
                return False
            await _delete_rows(session, [seq])
            return True


def _visible(owner: str, now: int) -> tuple[ColumnElement[bool], ...]:
    # Expired rows are invisible at once, whether or not the purge has run yet.
    return (
        StoredCompletion.owner == owner,
        or_(StoredCompletion.expires_at.is_(None), StoredCompletion.expires_at > now),
    )


def _with_metadata(
    select_rows: Select[Any], owner: str, pairs: list[tuple[str, str]]
) -> tuple[Select[Any], Any]:
    """`select_rows` driven by the index of the first (rarest) pair, the other pairs probed
    per row; and the column that orders it (the driving index's position)."""
    table = StoredCompletion
    key, value = pairs[0]
    driver = aliased(CompletionMetadata)
    select_rows = select_rows.join(
        driver,
        and_(
            driver.completion_seq == table.seq,
            driver.owner == owner,
            driver.key == key,
            driver.value == value,
        ),
    )
    for key, value in pairs[1:]:
        other = aliased(CompletionMetadata)
        # owner makes this an index-only probe of the lookup index.
        select_rows = select_rows.where(
            exists().where(
                other.completion_seq == driver.completion_seq,
                other.owner == owner,
                other.key == key,
                other.value == value,
            )
        )
    return select_rows, driver.completion_seq


async def _rarest_first(
    session: AsyncSession, owner: str, pairs: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The pairs, fewest rows first (counted up to _SELECTIVITY_PROBE_CAP, ties in the given
    order); empty when a pair has no rows, so nothing can match.

    The driving pair must be chosen from the data: a driver matching 40 % of the rows, with a
    pair matching 0.01 % checked per row, reads most of the index before it fills a page, and
    PostgreSQL's cached generic plan for the statement cannot tell the pairs apart either."""
    counts = [
        select(func.count())
        .select_from(
            select(CompletionMetadata.completion_seq)
            .where(
                CompletionMetadata.owner == owner,
                CompletionMetadata.key == key,
                CompletionMetadata.value == value,
            )
            .limit(_SELECTIVITY_PROBE_CAP)
            .subquery()
        )
        .scalar_subquery()
        for key, value in pairs
    ]
    found = (await session.execute(select(*counts))).one()
    if min(found) == 0:
        return []
    ranked = sorted(range(len(pairs)), key=lambda index: found[index])
    return [pairs[index] for index in ranked]


async def _insert_metadata(
    session: AsyncSession, seq: int, owner: str, metadata: dict[str, str]
) -> None:
    if metadata:
        await session.execute(
            insert(CompletionMetadata),
            [
                {"completion_seq": seq, "key": k, "value": v, "owner": owner}
                for k, v in metadata.items()
            ],
        )


async def _delete_rows(session: AsyncSession, seqs: list[int]) -> None:
    # Metadata rows explicitly too: SQLite only cascades with foreign_keys on, and being
    # explicit keeps both databases doing the same work.
    await session.execute(
        delete(CompletionMetadata).where(CompletionMetadata.completion_seq.in_(seqs))
    )
    await session.execute(delete(StoredCompletion).where(StoredCompletion.seq.in_(seqs)))
