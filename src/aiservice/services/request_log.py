"""The dashboard's request log and request view: what a viewer may see (their own rows, or
an admin's everyone's), filters as a page's query string gives them, and an opaque cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aiservice.errors import InvalidRequest, NotFound, validation_error
from aiservice.governance.accounts import Principal
from aiservice.services.metadata import MAX_KEY_LENGTH
from aiservice.services.queries import MetadataUpdate
from aiservice.services.stored_completions import StoredCompletions
from aiservice.store.request_log import (
    COMPLETION,
    RESPONSE,
    LogCursor,
    LogPage,
    LogQuery,
    RequestLogStore,
)
from aiservice.store.tables import UsageRecord
from aiservice.store.usage import UsageStore

PAGE_SIZE = 25
STATUSES = ("completed", "queued", "in_progress", "failed", "cancelled", "incomplete")
_CURSOR = re.compile(r"^c(\d+|-)r(\d+|-)$")


class FormFields(BaseModel):
    """A dashboard form's fields, as its query string or posted body gives them: unknown ones
    ignored (the CSRF token), text trimmed, an empty field unset."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value


class LogFilter(FormFields):
    """A request log's filters, as the page's form and links carry them (empty: unset)."""

    kind: str | None = Field(default=None, pattern=f"^({COMPLETION}|{RESPONSE})$")
    model: str | None = Field(default=None, max_length=256)
    metadata_key: str | None = Field(default=None, max_length=MAX_KEY_LENGTH)
    metadata_value: str | None = Field(default=None, max_length=512)
    feature: str | None = Field(default=None, max_length=512)
    since: date | None = None
    until: date | None = None  # inclusive: the whole day
    status: str | None = Field(default=None, pattern=f"^({'|'.join(STATUSES)})$")
    user: str | None = Field(default=None, max_length=128)  # admins only
    key: str | None = Field(default=None, max_length=40)  # admins only
    after: str | None = Field(default=None, max_length=64)

    def as_params(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links that keep it), with `changes` applied."""
        values = self.model_dump() | changes
        return {name: str(value) for name, value in values.items() if value is not None}


def parse_filter(params: dict[str, str]) -> LogFilter:
    try:
        return LogFilter.model_validate(params)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


@dataclass(frozen=True, slots=True)
class RequestView:
    """One request as its page shows it."""

    kind: str
    row: Any  # StoredCompletion or StoredResponse
    usage: UsageRecord | None


class RequestLog:
    def __init__(self, store: RequestLogStore, usage: UsageStore, completions: StoredCompletions):
        self._store = store
        self._usage = usage
        self._completions = completions

    async def page(self, viewer: Principal, log_filter: LogFilter) -> LogPage:
        return await self._store.page(_query(viewer, log_filter))

    async def request(self, viewer: Principal, request_id: str) -> RequestView:
        """One completion or response: the viewer's own, or (admins) anyone's; another
        user's is not found, as if it did not exist."""
        owner = None if viewer.is_admin else viewer.owner
        if request_id.startswith("resp_"):
            row, kind = await self._store.response(request_id, owner), RESPONSE
        else:
            row, kind = await self._store.completion(request_id, owner), COMPLETION
        if row is None:
            raise NotFound(f"No request with id '{request_id}'.")
        usage = await self._usage.for_request(row.request_id) if row.request_id else None
        return RequestView(kind, row, usage)

    async def relabel(
        self, viewer: Principal, completion_id: str, metadata: dict[str, str]
    ) -> None:
        """Replace a stored completion's metadata, as its owner (an admin may re-label anyone's)."""
        view = await self.request(viewer, completion_id)
        if view.kind != COMPLETION:
            raise InvalidRequest("Only stored chat completions can be re-labelled.")
        body = MetadataUpdate.model_validate({"metadata": metadata})
        await self._completions.update(view.row.owner, completion_id, body)


def encode_cursor(cursor: LogCursor) -> str:
    def part(seq: int | None) -> str:
        return "-" if seq is None else str(seq)

    return f"c{part(cursor.completion_seq)}r{part(cursor.response_seq)}"


def _decode_cursor(text: str | None) -> LogCursor:
    if text is None:
        return LogCursor()
    match = _CURSOR.match(text)
    if match is None:
        raise InvalidRequest("This page link is not valid any more.", param="after")

    def seq(part: str) -> int | None:
        return None if part == "-" else int(part)

    return LogCursor(seq(match.group(1)), seq(match.group(2)))


def _query(viewer: Principal, log_filter: LogFilter) -> LogQuery:
    pairs: list[tuple[str, str]] = []
    if log_filter.metadata_key and log_filter.metadata_value is not None:
        pairs.append((log_filter.metadata_key, log_filter.metadata_value))
    if log_filter.feature:
        pairs.append(("feature", log_filter.feature))
    return LogQuery(
        owner=log_filter.user if viewer.is_admin else viewer.owner,
        key_id=log_filter.key if viewer.is_admin else None,
        model=log_filter.model,
        metadata=tuple(dict(pairs).items()),
        since=_day_start(log_filter.since),
        until=_day_start(log_filter.until + timedelta(days=1)) if log_filter.until else None,
        status=log_filter.status,
        kind=log_filter.kind,
        cursor=_decode_cursor(log_filter.after),
        limit=PAGE_SIZE,
    )


def _day_start(day: date | None) -> int | None:
    if day is None:
        return None
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
