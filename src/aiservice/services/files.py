"""The Files API: upload, list, retrieve, read and delete files, each scoped to its owner.

Uploads are read and stored a chunk at a time (store/files.py), so their size is bounded by
`max_file_bytes`, not by memory. A `batch` file is also bounded to `batch_max_lines` lines, as
OpenAI's are; its content is checked line by line only when a batch uses it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from openai.types import FileObject
from pydantic import BaseModel, ConfigDict, Field

from aiservice.errors import InvalidRequest, NotFound, RequestTooLarge
from aiservice.store.files import CHUNK_BYTES, FileStore, NewFile, UnknownFileCursor
from aiservice.store.tables import StoredFile

UPLOAD_PURPOSES = ("batch", "user_data")
BATCH_FILE_TTL_S = 30 * 86400  # OpenAI: batch files expire after 30 days unless told otherwise

Read = Callable[[int], Awaitable[bytes]]


class ExpiresAfter(BaseModel):
    """A file's expiry policy: `seconds` after its creation."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class FileService:
    """Files of every owner on one database."""

    def __init__(self, store: FileStore, max_bytes: int, max_batch_lines: int):
        self._store = store
        self.max_bytes = max_bytes
        self.max_batch_lines = max_batch_lines

    async def upload(
        self,
        owner: str,
        purpose: str,
        filename: str,
        read: Read,
        expires_after: ExpiresAfter | None = None,
    ) -> dict[str, Any]:
        """Store what `read` yields (until it returns b"") as a new file of `owner`."""
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"'{purpose}' is not a supported purpose: use one of {', '.join(UPLOAD_PURPOSES)}.",
                param="purpose",
            )
        now = int(time.time())
        if expires_after is not None:
            expires_at: int | None = now + expires_after.seconds
        else:
            expires_at = now + BATCH_FILE_TTL_S if purpose == "batch" else None
        new = NewFile(_file_id(), owner, purpose, filename[:512] or "upload", now, expires_at)
        file_seq = await self._store.begin(new)
        try:
            size = await self._copy(file_seq, read, count_lines=purpose == "batch")
            row = await self._store.finish(file_seq, size)
        except BaseException:
            await self._store.discard(file_seq)
            raise
        return file_object(row)

    async def _copy(self, file_seq: int, read: Read, *, count_lines: bool) -> int:
        size = lines = position = 0
        last = b"\n"
        while chunk := await read(CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestTooLarge(
                    f"The file is larger than the limit of {self.max_bytes} bytes.",
                    param="file",
                    code="file_too_large",
                )
            if count_lines:
                lines += chunk.count(b"\n")
                last = chunk[-1:]
                if lines > self.max_batch_lines:
                    raise InvalidRequest(
                        f"A batch input file holds at most {self.max_batch_lines} lines.",
                        param="file",
                        code="too_many_lines",
                    )
            await self._store.append(file_seq, position, chunk)
            position += 1
        if size == 0:
            raise InvalidRequest("The file is empty.", param="file", code="empty_file")
        if count_lines and last != b"\n" and lines + 1 > self.max_batch_lines:
            raise InvalidRequest(
                f"A batch input file holds at most {self.max_batch_lines} lines.",
                param="file",
                code="too_many_lines",
            )
        return size

    async def write(
        self,
        owner: str,
        purpose: str,
        filename: str,
        chunks: AsyncIterator[bytes],
        expires_at: int | None,
        file_id: str | None = None,
    ) -> StoredFile:
        """A file the service writes itself (a batch's output), from `chunks`."""
        new = NewFile(file_id or _file_id(), owner, purpose, filename, int(time.time()), expires_at)
        file_seq = await self._store.begin(new)
        size = position = 0
        try:
            async for chunk in chunks:
                await self._store.append(file_seq, position, chunk)
                size += len(chunk)
                position += 1
            return await self._store.finish(file_seq, size)
        except BaseException:
            await self._store.discard(file_seq)
            raise

    async def retrieve(self, owner: str, file_id: str) -> dict[str, Any]:
        return file_object(await self.row(owner, file_id))

    async def row(self, owner: str, file_id: str) -> StoredFile:
        row = await self._store.get(owner, file_id, int(time.time()))
        if row is None:
            raise NotFound(f"No such File object: {file_id}", param="id")
        return row

    async def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
    ) -> dict[str, Any]:
        try:
            page = await self._store.list(
                owner, int(time.time()), purpose=purpose, limit=limit, order=order, after=after
            )
        except UnknownFileCursor:
            raise InvalidRequest(f"No such File object: {after}", param="after") from None
        data = [file_object(row) for row in page.rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }

    async def content(self, owner: str, file_id: str) -> tuple[StoredFile, AsyncIterator[bytes]]:
        row = await self.row(owner, file_id)
        return row, self._store.content(row.seq)

    async def read_all(self, row: StoredFile) -> AsyncIterator[bytes]:
        """The content of a file already found (a batch's input), a chunk at a time."""
        async for chunk in self._store.content(row.seq):
            yield chunk

    async def delete(self, owner: str, file_id: str) -> dict[str, Any]:
        if not await self._store.delete(owner, file_id):
            raise NotFound(f"No such File object: {file_id}", param="id")
        return {"id": file_id, "object": "file", "deleted": True}

    async def delete_ids(self, file_ids: list[str]) -> None:
        await self._store.delete_ids(file_ids)


def file_object(row: StoredFile) -> dict[str, Any]:
    """The row as OpenAI's file object."""
    return FileObject(
        id=row.id,
        object="file",
        bytes=row.bytes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        filename=row.filename,
        purpose=row.purpose,  # type: ignore[arg-type]
        status="processed",
    ).model_dump(mode="json", exclude_none=True)  # the spec's fields are never null


def _file_id() -> str:
    return f"file-{secrets.token_hex(12)}"
