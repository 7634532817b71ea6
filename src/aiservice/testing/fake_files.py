"""The fake upstream's Files API: uploads (multipart/form-data) kept in memory, their file
objects, their raw content, and the files a batch writes (purpose `batch_output`)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from aiservice.testing.delivery import Answer, error_answer, json_answer
from aiservice.testing.wire import Body, error_envelope

FILES_PATH = "/v1/files"
UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
# OpenAI keeps batch files 30 days unless told otherwise; other files until deleted.
BATCH_FILE_LIFETIME_S = 30 * 24 * 3600
_EXPIRY_RANGE_S = (3600, 30 * 24 * 3600)
_OCTET_STREAM = b"application/octet-stream"


@dataclass(slots=True)
class StoredFile:
    """One file the fake holds: OpenAI's file object and the bytes uploaded (or written)."""

    meta: Body
    content: bytes


@dataclass(slots=True)
class _Part:
    """One part of a multipart body while it is parsed."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


class FileStore:
    """The files uploaded to the fake (or written by its batches); safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._serials = itertools.count(1)

    def add(
        self, content: bytes, filename: str, purpose: str, lifetime_s: int | None = None
    ) -> Body:
        """Keep a file; returns its file object. Without `lifetime_s`, batch files expire
        after 30 days and others never."""
        created = int(time.time())
        if lifetime_s is None and purpose.startswith("batch"):
            lifetime_s = BATCH_FILE_LIFETIME_S
        meta: Body = {
            "id": f"file-fake-{next(self._serials):06d}",
            "object": "file",
            "bytes": len(content),
            "created_at": created,
            "expires_at": None if lifetime_s is None else created + lifetime_s,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self._files[meta["id"]] = StoredFile(meta, content)
        return dict(meta)

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def listed(self) -> list[Body]:
        """Every file object, newest first (OpenAI's default order)."""
        with self._lock:
            return [dict(stored.meta) for stored in reversed(self._files.values())]

    def clear(self) -> int:
        """Forget every file; returns how many there were."""
        with self._lock:
            count = len(self._files)
            self._files.clear()
            return count

    # The HTTP routes.

    def upload(self, headers: dict[str, str], raw: bytes) -> Answer:
        """`POST /v1/files`: a multipart body with `file`, `purpose` and an optional
        `expires_after[anchor]` / `expires_after[seconds]`."""
        parts = parse_multipart(headers.get("content-type", ""), raw)
        if parts is None:
            return error_answer(400, "The body must be multipart/form-data.")
        upload = parts.get("file")
        filename = _filename(upload.headers) if upload is not None else None
        if upload is None or filename is None:
            return error_answer(400, "A file must be uploaded in the `file` field.", param="file")
        purpose = _text(parts.get("purpose"))
        if purpose not in UPLOAD_PURPOSES:
            message = f"purpose must be one of {', '.join(sorted(UPLOAD_PURPOSES))}."
            return error_answer(400, message, param="purpose")
        lifetime = _lifetime(parts)
        if isinstance(lifetime, Answer):
            return lifetime
        return json_answer(self.add(bytes(upload.data), filename, purpose, lifetime))

    def list_answer(self) -> Answer:
        """`GET /v1/files`: every file, in one page."""
        files = self.listed()
        return json_answer(
            {
                "object": "list",
                "data": files,
                "first_id": files[0]["id"] if files else None,
                "last_id": files[-1]["id"] if files else None,
                "has_more": False,
            }
        )

    def route(self, method: str, path: str) -> Callable[[], Answer] | None:
        """The answer to a `/v1/files/{id}[/content]` request; None when the method does not
        apply to the path (or the path is no such route)."""
        parsed = parse_file_path(path)
        if parsed is None:
            return None
        file_id, tail = parsed
        handlers = {
            ("GET", ""): self._retrieve,
            ("DELETE", ""): self._delete,
            ("GET", "content"): self._content,
        }
        handler = handlers.get((method, tail))
        return None if handler is None else lambda: handler(file_id)

    def _retrieve(self, file_id: str) -> Answer:
        stored = self.get(file_id)
        return _no_such_file(file_id) if stored is None else json_answer(stored.meta)

    def _content(self, file_id: str) -> Answer:
        stored = self.get(file_id)
        if stored is None:
            return _no_such_file(file_id)
        return Answer(body=stored.content, content_type=_OCTET_STREAM)

    def _delete(self, file_id: str) -> Answer:
        with self._lock:
            stored = self._files.pop(file_id, None)
        if stored is None:
            return _no_such_file(file_id)
        return json_answer({"id": file_id, "object": "file", "deleted": True})


def parse_file_path(path: str) -> tuple[str, str] | None:
    """(file id, "" or "content") for `/v1/files/{id}[/content]`; None for any other path."""
    rest = path.removeprefix(FILES_PATH + "/")
    if rest == path:
        return None
    file_id, _, tail = rest.partition("/")
    if not file_id or tail not in ("", "content"):
        return None
    return file_id, tail


def parse_multipart(content_type: str, raw: bytes) -> dict[str, _Part] | None:
    """The parts of a multipart/form-data body by field name (the last of a repeated name);
    None when the body is not multipart or does not parse."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        return None
    parts: list[_Part] = []
    header: list[bytearray] = [bytearray(), bytearray()]  # the name and value being read

    def header_end() -> None:
        name, value = (bytes(piece).decode("latin-1") for piece in header)
        parts[-1].headers[name.strip().lower()] = value.strip()
        header[0].clear()
        header[1].clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": lambda: parts.append(_Part()),
            "on_part_data": lambda data, start, end: parts[-1].data.extend(data[start:end]),
            "on_header_field": lambda data, start, end: header[0].extend(data[start:end]),
            "on_header_value": lambda data, start, end: header[1].extend(data[start:end]),
            "on_header_end": header_end,
        },
    )
    try:
        parser.write(raw)
        parser.finalize()
    except MultipartParseError:
        return None
    named = {}
    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition"))
        if b"name" in disposition:
            named[disposition[b"name"].decode()] = part
    return named


def _filename(headers: dict[str, str]) -> str | None:
    _, disposition = parse_options_header(headers.get("content-disposition"))
    filename = disposition.get(b"filename")
    return None if filename is None else filename.decode("utf-8", errors="replace")


def _text(part: _Part | None) -> str | None:
    return None if part is None else part.data.decode("utf-8", errors="replace")


def _lifetime(parts: dict[str, _Part]) -> int | Answer | None:
    """The seconds `expires_after` gives, None without it, or the 400 answer it deserves."""
    anchor = _text(parts.get("expires_after[anchor]"))
    seconds = _text(parts.get("expires_after[seconds]"))
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        message = "expires_after[anchor] must be created_at."
        return error_answer(400, message, param="expires_after[anchor]")
    low, high = _EXPIRY_RANGE_S
    if seconds is None or not seconds.isdigit() or not low <= int(seconds) <= high:
        message = f"expires_after[seconds] must be an integer from {low} to {high}."
        return error_answer(400, message, param="expires_after[seconds]")
    return int(seconds)


def _no_such_file(file_id: str) -> Answer:
    return not_found(f"No such File object: {file_id}", "id")


def not_found(message: str, param: str) -> Answer:
    """A 404 in OpenAI's envelope for an unknown file or batch id."""
    envelope = error_envelope(404, message=message, param=param)
    envelope["error"]["code"] = None  # not the 404 default, model_not_found: no model here
    return json_answer(envelope, 404)
