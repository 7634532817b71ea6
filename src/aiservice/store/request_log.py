"""The dashboard's request log: stored chat completions and responses, newest first, one
page at a time. Each table is paged by its own insertion order (`seq`, which its indexes
already hold in order), and the two pages are merged by creation time: the cursor keeps one
position per table, so no row is shown twice or skipped, and nothing is ever counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from aiservice.store.database import Database
from aiservice.store.tables import CompletionMetadata, StoredCompletion, StoredResponse

COMPLETION, RESPONSE = "chat.completion", "response"
# A stored chat completion is written once it has finished: this is its status in the log.
COMPLETED = "completed"
# A metadata filter of several pairs is driven by its rarest pair, counted up to this many.
_PROBE_CAP = 1000
# A row is stored within moments of its creation time (a request's duration; a background
# response at once): creation times grow with seq to within far less than this margin.
_SEQ_MARGIN_S = 86400


@dataclass(frozen=True, slots=True)
class LogCursor:
    """Where each table's next page starts: below these seqs (None: from the newest; 0: that
    table has nothing more)."""

    completion_seq: int | None = None
    response_seq: int | None = None


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which rows: every filter given must match."""

    owner: str | None  # None: everyone's (an admin's log)
    key_id: str | None = None
    model: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    since: int | None = None  # unix seconds, inclusive
    until: int | None = None  # unix seconds, exclusive
    status: str | None = None
    kind: str | None = None  # COMPLETION, RESPONSE or None (both)
    cursor: LogCursor = LogCursor()
    limit: int = 25


@dataclass(frozen=True, slots=True)
class LogRow:
    kind: str
    seq: int
    id: str
    owner: str
    key_id: str | None
    model: str
    created_at: int
    status: str
    input_tokens: int
    output_tokens: int
    metadata: dict[str, str]
    background: bool = False


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[LogRow]
    next: LogCursor | None  # None: this was the last page


class RequestLogStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def page(self, query: LogQuery) -> LogPage:
        async with self._sessions() as session:
            completions = await _completions(session, query)
            responses = await _responses(session, query)
        shown = _merged(completions, responses, query.limit)
        cursor = LogCursor(
            _next_position(completions, shown, query.cursor.completion_seq, query.limit),
            _next_position(responses, shown, query.cursor.response_seq, query.limit),
        )
        more = len(shown) < len(completions) + len(responses)
        return LogPage(shown, cursor if more else None)

    async def completion(self, completion_id: str, owner: str | None) -> StoredCompletion | None:
        statement = select(StoredCompletion).where(StoredCompletion.id == completion_id)
        if owner is not None:
            statement = statement.where(StoredCompletion.owner == owner)
        async with self._sessions() as session:
            return await session.scalar(statement)

    async def response(self, response_id: str, owner: str | None) -> StoredResponse | None:
        statement = select(StoredResponse).where(StoredResponse.id == response_id)
        if owner is not None:
            statement = statement.where(StoredResponse.owner == owner)
        async with self._sessions() as session:
            return await session.scalar(statement)


def _merged(completions: list[LogRow], responses: list[LogRow], limit: int) -> list[LogRow]:
    """Up to `limit` rows, newest first, taken from the heads of both lists (each in its
    table's own order): what each table shows is a prefix of its list, so that the next page
    can start right after it."""
    shown: list[LogRow] = []
    first, second = 0, 0
    while len(shown) < limit and (first < len(completions) or second < len(responses)):
        take_completion = second >= len(responses) or (
            first < len(completions)
            and completions[first].created_at >= responses[second].created_at
        )
        if take_completion:
            shown.append(completions[first])
            first += 1
        else:
            shown.append(responses[second])
            second += 1
    return shown


def _next_position(
    rows: list[LogRow], shown: list[LogRow], before: int | None, limit: int
) -> int | None:
    """The table's next start: below its last row shown; 0 once all its rows were shown."""
    kind_shown = [row.seq for row in shown if rows and row.kind == rows[0].kind]
    if len(kind_shown) == len(rows) and len(rows) <= limit:
        return 0  # nothing of this table is left past what was shown
    return min(kind_shown) if kind_shown else before


async def _completions(session: AsyncSession, query: LogQuery) -> list[LogRow]:
    position = query.cursor.completion_seq
    if query.kind == RESPONSE or position == 0:
        return []
    if query.status is not None and query.status != COMPLETED:
        return []
    table = StoredCompletion
    statement = select(
        table.seq,
        table.id,
        table.owner,
        table.key_id,
        table.model,
        table.created_at,
        table.prompt_tokens.label("input_tokens"),
        table.completion_tokens.label("output_tokens"),
        table.metadata_.label("metadata"),
    )
    order: Any = table.seq
    pairs = list(query.metadata)
    if len(pairs) > 1:
        pairs = await _rarest_first(session, query.owner, pairs)
        if not pairs:
            return []
    if pairs:
        statement, order = _with_metadata(statement, query.owner, pairs)
    conditions = _common(table, query) + await _seq_window(session, table, order, query)
    if position is not None:
        conditions.append(order < position)
    statement = statement.where(*conditions).order_by(order.desc()).limit(query.limit + 1)
    return _log_rows(COMPLETION, await session.execute(statement))


async def _responses(session: AsyncSession, query: LogQuery) -> list[LogRow]:
    position = query.cursor.response_seq
    if query.kind == COMPLETION or position == 0:
        return []
    table = StoredResponse
    metadata = table.response["metadata"]
    statement = select(
        table.seq,
        table.id,
        table.owner,
        table.key_id,
        table.model,
        table.created_at,
        table.status,
        table.background,
        table.input_tokens,
        table.output_tokens,
        metadata.label("metadata"),
    )
    conditions = _common(table, query) + await _seq_window(session, table, table.seq, query)
    conditions += [metadata[key].as_string() == value for key, value in query.metadata]
    if query.status is not None:
        conditions.append(table.status == query.status)
    if position is not None:
        conditions.append(table.seq < position)
    statement = statement.where(*conditions).order_by(table.seq.desc()).limit(query.limit + 1)
    return _log_rows(RESPONSE, await session.execute(statement))


def _log_rows(kind: str, result: Any) -> list[LogRow]:
    """The selected columns, labelled as LogRow's fields; a stored completion's status is
    COMPLETED, and metadata that is not an object (a response's JSON null) is none."""
    rows = []
    for row in result.mappings():
        fields = dict(row)
        if not isinstance(fields["metadata"], dict):
            fields["metadata"] = {}
        fields.setdefault("status", COMPLETED)
        rows.append(LogRow(kind=kind, **fields))
    return rows


def _common(table: Any, query: LogQuery) -> list[Any]:
    conditions: list[Any] = []
    if query.owner is not None:
        conditions.append(table.owner == query.owner)
    if query.key_id is not None:
        conditions.append(table.key_id == query.key_id)
    if query.model is not None:
        conditions.append(table.model == query.model)
    if query.since is not None:
        conditions.append(table.created_at >= query.since)
    if query.until is not None:
        conditions.append(table.created_at < query.until)
    return conditions


async def _seq_window(session: AsyncSession, table: Any, seq: Any, query: LogQuery) -> list[Any]:
    """The query's dates as bounds on `seq` too (the exact filter on created_at stays): a scan
    in seq order then starts and stops near the dates instead of walking the whole table from
    its newest row. Found by bisection on the primary key: a few dozen index probes."""
    if query.since is None and query.until is None:
        return []
    bounds = (await session.execute(select(func.min(table.seq), func.max(table.seq)))).one()
    if bounds[0] is None:
        return []  # an empty table: nothing to bound
    first, last = int(bounds[0]), int(bounds[1])
    conditions: list[Any] = []
    if query.since is not None:
        moment = query.since - _SEQ_MARGIN_S
        conditions.append(seq >= await _first_seq_from(session, table, moment, first, last))
    if query.until is not None:
        moment = query.until + _SEQ_MARGIN_S
        conditions.append(seq < await _first_seq_from(session, table, moment, first, last))
    return conditions


async def _first_seq_from(
    session: AsyncSession, table: Any, moment: int, first: int, last: int
) -> int:
    """The first seq from which rows were made at `moment` or later (one past `last` if none
    was), supposing creation times grow with seq (see _SEQ_MARGIN_S)."""
    low, high = first, last + 1
    while low < high:
        middle = (low + high) // 2
        found = (
            await session.execute(
                select(table.seq, table.created_at)
                .where(table.seq >= middle)
                .order_by(table.seq)
                .limit(1)
            )
        ).one()
        if found.created_at >= moment:
            high = middle
        else:
            low = int(found.seq) + 1
    return low


def _metadata_match(row: Any, owner: str | None, key: str, value: str) -> list[Any]:
    match = [row.key == key, row.value == value]
    return [*match, row.owner == owner] if owner is not None else match


def _with_metadata(
    statement: Select[Any], owner: str | None, pairs: list[tuple[str, str]]
) -> tuple[Select[Any], Any]:
    """Driven by the first (rarest) pair's index, which comes out in seq order; the other
    pairs probed per row."""
    driver = aliased(CompletionMetadata)
    (key, value), others = pairs[0], pairs[1:]
    statement = statement.join(
        driver,
        and_(
            driver.completion_seq == StoredCompletion.seq,
            *_metadata_match(driver, owner, key, value),
        ),
    )
    for key, value in others:
        other = aliased(CompletionMetadata)
        statement = statement.where(
            exists().where(
                other.completion_seq == driver.completion_seq,
                *_metadata_match(other, owner, key, value),
            )
        )
    return statement, driver.completion_seq


async def _rarest_first(
    session: AsyncSession, owner: str | None, pairs: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The pairs, fewest rows first (counted up to _PROBE_CAP); empty when one has none."""
    counts = [
        select(func.count())
        .select_from(
            select(CompletionMetadata.completion_seq)
            .where(*_metadata_match(CompletionMetadata, owner, key, value))
            .limit(_PROBE_CAP)
            .subquery()
        )
        .scalar_subquery()
        for key, value in pairs
    ]
    found = (await session.execute(select(*counts))).one()
    if min(found) == 0:
        return []
    return [pairs[index] for index in sorted(range(len(pairs)), key=lambda i: found[i])]
