"""Queries on files and their content. Every read is scoped to one owner.

Content is kept in the database as chunks of at most `CHUNK_BYTES`, so that a file is written
and read a chunk at a time (a 200 MB upload never sits whole in memory) and every replica
sees the same files. A file is `complete` once its last chunk is in; until then it is neither
listed nor readable, and one left incomplete (its writer died) is purged after an hour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, insert, or_, select, update

from aiservice.store.database import Database
from aiservice.store.tables import FileChunk, StoredFile

CHUNK_BYTES = 1 << 20
ABANDONED_AFTER_S = 3600
Order = Literal["asc", "desc"]


class UnknownFileCursor(LookupError):
    """`after` names no file of this owner."""


@dataclass(frozen=True, slots=True)
class NewFile:
    id: str
    owner: str
    purpose: str
    filename: str
    created_at: int
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class FilePage:
    rows: list[StoredFile]
    has_more: bool


class FileStore:
    """Files on one database."""

    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def begin(self, new: NewFile) -> int:
        """Start writing a file; its `seq`, for `append` and `finish`."""
        async with self._sessions.begin() as session:
            return await session.scalar(
                insert(StoredFile)
                .values(
                    id=new.id,
                    owner=new.owner,
                    purpose=new.purpose,
                    filename=new.filename,
                    bytes=0,
                    created_at=new.created_at,
                    expires_at=new.expires_at,
                    complete=False,
                )
                .returning(StoredFile.seq)
            )

    async def append(self, file_seq: int, position: int, data: bytes) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                insert(FileChunk).values(file_seq=file_seq, position=position, data=data)
            )

    async def finish(self, file_seq: int, size: int) -> StoredFile:
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(StoredFile)
                .where(StoredFile.seq == file_seq)
                .values(bytes=size, complete=True)
                .returning(StoredFile)
            )

    async def discard(self, file_seq: int) -> None:
        """Drop a file whose writing failed (its chunks go with it)."""
        async with self._sessions.begin() as session:
            await session.execute(delete(StoredFile).where(StoredFile.seq == file_seq))

    async def get(self, owner: str, file_id: str, now: int) -> StoredFile | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(StoredFile).where(*_visible(owner, now), StoredFile.id == file_id)
            )

    async def list(
        self,
        owner: str,
        now: int,
        *,
        purpose: str | None,
        limit: int,
        order: Order,
        after: str | None,
    ) -> FilePage:
        table = StoredFile
        query = select(table).where(*_visible(owner, now))
        if purpose is not None:
            query = query.where(table.purpose == purpose)
        ascending = order == "asc"
        async with self._sessions() as session:
            if after is not None:
                cursor = await session.scalar(
                    select(table.seq).where(table.owner == owner, table.id == after)
                )
                if cursor is None:
                    raise UnknownFileCursor(after)
                query = query.where(table.seq > cursor if ascending else table.seq < cursor)
            query = query.order_by(table.seq.asc() if ascending else table.seq.desc())
            rows = list(await session.scalars(query.limit(limit + 1)))
        return FilePage(rows[:limit], has_more=len(rows) > limit)

    async def content(self, file_seq: int) -> AsyncIterator[bytes]:
        """The file's content, a chunk (one query) at a time."""
        position = -1
        while True:
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(FileChunk.position, FileChunk.data)
                        .where(FileChunk.file_seq == file_seq, FileChunk.position > position)
                        .order_by(FileChunk.position)
                        .limit(1)
                    )
                ).first()
            if row is None:
                return
            position = row.position
            yield row.data

    async def delete(self, owner: str, file_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(StoredFile).where(StoredFile.owner == owner, StoredFile.id == file_id)
            )
            return result.rowcount > 0

    async def delete_ids(self, file_ids: list[str]) -> None:
        """Drop files by id, whoever owns them (a batch's output written again)."""
        if file_ids:
            async with self._sessions.begin() as session:
                await session.execute(delete(StoredFile).where(StoredFile.id.in_(file_ids)))


def _visible(owner: str, now: int) -> tuple:
    return (
        StoredFile.owner == owner,
        StoredFile.complete.is_(True),
        or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now),
    )
