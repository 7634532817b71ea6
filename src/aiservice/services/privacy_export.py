"""Exporting a data subject: everything stored about them, as newline-delimited JSON, one
object a line with an `object` field naming its kind, streamed page by page (a subject of a
hundred thousand rows never sits in memory whole).

The first line (`privacy.export`) says what was asked, the last (`privacy.export.summary`)
how many objects of each kind came before it: a reader can tell a complete export from a cut
one. File contents come as `file.content` lines of at most 1 MiB each, base64.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select

from aiservice.governance.accounts import key_view, user_view
from aiservice.services.batches import batch_object
from aiservice.services.files import file_object
from aiservice.services.privacy_subject import Subject
from aiservice.store.database import Database
from aiservice.store.subject_rows import (
    CONTENT_KINDS,
    USAGE,
    Kind,
    account_rows,
    conversation_items,
    file_chunks,
    page,
)
from aiservice.store.tables import BatchLine, StoredFile

PAGE_ROWS = 200
Line = dict[str, Any]


class PrivacyExport:
    def __init__(self, database: Database, subject: Subject):
        self._sessions = database.sessions
        self._subject = subject
        self.id = "export_" + secrets.token_hex(12)
        self.counts: dict[str, int] = {}

    async def lines(self) -> AsyncIterator[bytes]:
        yield _encode(
            {
                "object": "privacy.export",
                "id": self.id,
                "created_at": int(time.time()),
                "subject": self._subject.label,
            }
        )
        async for line in self._objects():
            self.counts[line["object"]] = self.counts.get(line["object"], 0) + 1
            yield _encode(line)
        yield _encode({"object": "privacy.export.summary", "id": self.id, "counts": self.counts})

    async def _objects(self) -> AsyncIterator[Line]:
        subject = self._subject
        if subject.kind == "account":
            async with self._sessions() as session:
                user, keys = await account_rows(session, subject.owner or "")
            if user is not None:
                yield user_view(user)
                for key in keys:
                    yield key_view(key, user)
        for kind in (*CONTENT_KINDS, USAGE):
            async for row in self._rows(kind):
                async for line in self._lines_of(kind, row):
                    yield line

    async def _rows(self, kind: Kind) -> AsyncIterator[Any]:
        after = 0
        while True:
            async with self._sessions() as session:
                rows = await page(session, kind, self._subject, after, PAGE_ROWS)
            for row in rows:
                yield row
            if len(rows) < PAGE_ROWS:
                return
            after = rows[-1].seq

    async def _lines_of(self, kind: Kind, row: Any) -> AsyncIterator[Line]:
        yield _VIEWS[kind.name](row)
        if kind.name == "conversation":
            async with self._sessions() as session:
                items = await conversation_items(session, row.seq)
            for item in items:
                yield {"object": "conversation.item", "conversation_id": row.id, "item": item.item}
        elif kind.name == "batch":
            async for line in self._batch_lines(row):
                yield line
        elif kind.name == "file":
            async for line in self._content(row):
                yield line

    async def _batch_lines(self, batch: Any) -> AsyncIterator[Line]:
        after = 0
        while True:
            async with self._sessions() as session:
                lines = list(
                    await session.scalars(
                        select(BatchLine)
                        .where(BatchLine.batch_seq == batch.seq, BatchLine.line > after)
                        .order_by(BatchLine.line)
                        .limit(PAGE_ROWS)
                    )
                )
            for line in lines:
                yield {
                    "object": "batch.request",
                    "batch_id": batch.id,
                    "custom_id": line.custom_id,
                    "body": line.body,
                    "result": line.result,
                }
            if len(lines) < PAGE_ROWS:
                break
            after = lines[-1].line
        if self._subject.kind != "account":  # an account's files come with its own files
            for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
                async for line in self._file_by_id(file_id):
                    yield line

    async def _file_by_id(self, file_id: str | None) -> AsyncIterator[Line]:
        if not file_id:
            return
        async with self._sessions() as session:
            row = await session.scalar(select(StoredFile).where(StoredFile.id == file_id))
        if row is not None:
            yield file_object(row)
            async for line in self._content(row):
                yield line

    async def _content(self, row: StoredFile) -> AsyncIterator[Line]:
        position = -1
        while True:
            async with self._sessions() as session:
                chunk = await file_chunks(session, row.seq, position)
            if chunk is None:
                return
            position = chunk.position
            yield {
                "object": "file.content",
                "file_id": row.id,
                "position": position,
                "data": base64.b64encode(chunk.data).decode("ascii"),
            }


def _completion(row: Any) -> Line:
    return {**row.response, "metadata": row.metadata_, "request": row.request}


def _response(row: Any) -> Line:
    return {**row.response, "input_items": row.input_items}


def _conversation(row: Any) -> Line:
    return {"object": "conversation", "id": row.id, "created_at": row.created_at,
            "metadata": row.metadata_}  # fmt: skip


def _analysis(row: Any) -> Line:
    fields = ("id", "model", "name", "status", "created_at", "finished_at", "report", "error")
    return {"object": "document.analysis", **{name: getattr(row, name) for name in fields},
            "metadata": row.metadata_}  # fmt: skip


def _usage(row: Any) -> Line:
    columns = ("record_id", "created_at", "request_id", "owner", "key_id", "route",
               "model_requested", "model_served", "input_tokens", "output_tokens",
               "cached_tokens", "cost_usd", "status_code", "error_code", "end_user")  # fmt: skip
    values = {name: getattr(row, name) for name in columns}
    return {"object": "usage.record", **values, "metadata": row.metadata_}


_VIEWS: dict[str, Callable[[Any], Line]] = {
    "chat.completion": _completion,
    "response": _response,
    "conversation": _conversation,
    "document.analysis": _analysis,
    "batch": batch_object,
    "file": file_object,
    "usage.record": _usage,
}


def _encode(line: Line) -> bytes:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
