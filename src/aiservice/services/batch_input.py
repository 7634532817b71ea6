"""A batch's input file, read and checked line by line.

Each line is `{"custom_id", "method": "POST", "url", "body"}`. Every fault of every line is
reported at once, with its 1-based line number as OpenAI numbers them; blank lines are
skipped (but counted). The file is read a chunk at a time and checked in slices off the
event loop, so a 50,000-line file neither sits whole in memory nor stalls other requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiservice.errors import AIServiceError
from aiservice.services.batch_endpoints import BatchEndpoints
from aiservice.store.batches import NewLine

SLICE = 500  # lines checked per hop to a thread
MAX_CUSTOM_ID = 512


@dataclass(slots=True)
class InputCheck:
    """What the check found: the faults (BatchError objects), the lines, their models."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    models: list[str] = field(default_factory=list)  # first seen first
    custom_ids: set[str] = field(default_factory=set)


async def numbered_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """The file's non-blank lines with their 1-based numbers."""
    number, rest = 0, b""
    async for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for raw in complete:
            number += 1
            if raw.strip():
                yield number, raw
    if rest.strip():
        yield number + 1, rest


async def check_input(
    chunks: AsyncIterator[bytes], endpoint: str, endpoints: BatchEndpoints
) -> InputCheck:
    """Every fault of the file; nothing is kept of the lines but their ids and models."""
    found = InputCheck()
    async for piece in _slices(numbered_lines(chunks)):
        await asyncio.to_thread(_check_slice, piece, endpoint, endpoints, found)
    return found


async def parsed_lines(
    chunks: AsyncIterator[bytes], endpoint: str, endpoints: BatchEndpoints
) -> AsyncIterator[list[NewLine]]:
    """The lines of a file `check_input` passed, a slice at a time, to be written."""
    async for piece in _slices(numbered_lines(chunks)):
        yield await asyncio.to_thread(_parse_slice, piece)


def _check_slice(
    piece: list[tuple[int, bytes]], endpoint: str, endpoints: BatchEndpoints, found: InputCheck
) -> None:
    for number, raw in piece:
        found.lines += 1
        fault = _fault(number, raw, endpoint, endpoints, found)
        if fault is not None:
            found.errors.append(fault)


def _fault(
    number: int, raw: bytes, endpoint: str, endpoints: BatchEndpoints, found: InputCheck
) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return _error(number, "invalid_json_line", "This line is not valid JSON.")
    if not isinstance(line, dict):
        return _error(number, "invalid_json_line", "This line is not a JSON object.")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error(number, "missing_custom_id", "This line has no `custom_id`.", "custom_id")
    if len(custom_id) > MAX_CUSTOM_ID:
        return _error(
            number,
            "invalid_custom_id",
            f"A `custom_id` is at most {MAX_CUSTOM_ID} characters.",
            "custom_id",
        )
    if custom_id in found.custom_ids:
        return _error(
            number,
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' is already used by an earlier line.",
            "custom_id",
        )
    found.custom_ids.add(custom_id)
    if line.get("method", "POST") != "POST":
        return _error(number, "invalid_method", "The `method` of a line must be POST.", "method")
    if line.get("url") != endpoint:
        return _error(
            number,
            "mismatched_endpoint",
            f"The line's `url` must be the batch's endpoint, {endpoint}.",
            "url",
        )
    try:
        checked = endpoints.check(endpoint, line.get("body"))
    except AIServiceError as error:
        code = error.code or "invalid_request"
        param = f"body.{error.param}" if error.param and error.param != "body" else "body"
        return _error(number, code, error.message, param)
    if checked.model is not None and checked.model not in found.models:
        found.models.append(checked.model)
    return None


def _parse_slice(piece: Iterable[tuple[int, bytes]]) -> list[NewLine]:
    lines = []
    for number, raw in piece:
        line = json.loads(raw)
        lines.append(NewLine(number, line["custom_id"], line["body"]))
    return lines


async def _slices(
    lines: AsyncIterator[tuple[int, bytes]],
) -> AsyncIterator[list[tuple[int, bytes]]]:
    piece: list[tuple[int, bytes]] = []
    async for numbered in lines:
        piece.append(numbered)
        if len(piece) >= SLICE:
            yield piece
            piece = []
    if piece:
        yield piece


def _error(number: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": number}
