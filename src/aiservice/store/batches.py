"""Queries on batches and their lines, and the two job queues they double as.

A batch row is a job while it needs one worker's attention — validating its input, writing its
output files at the end (completed, cancelled or expired), or following an upstream batch —
and its lines are jobs of their own, several workers running lines of one batch at once. Both
are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers)
and every later write checks that the caller still holds it, so a line taken over after its
worker died is answered, and charged, once: by whoever commits first.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, null, or_, select, tuple_, update

from aiservice.store.batch_status import OPEN, BatchStatus, LineState
from aiservice.store.database import Database
from aiservice.store.tables import BatchLine, StoredBatch
from aiservice.store.usage import insert_records

# Lines are written in slices of this many rows: 50,000 in one statement is too many
# parameters for SQLite and asyncpg alike.
_INSERT_SLICE = 500


class UnknownBatchCursor(LookupError):
    """`after` names no batch of this owner."""


@dataclass(frozen=True, slots=True)
class NewBatch:
    id: str
    owner: str
    key_id: str | None
    principal: dict[str, Any]
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None
    output_expires_after: dict[str, Any] | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class NewLine:
    line: int  # 1-based, in the input file
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineCounts:
    """A batch's lines by state, and the tokens of those done."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    open: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LineEnd:
    """What a worker writes when a line is done."""

    state: LineState
    result: dict[str, Any]  # the output (or error) file's line
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    usage: dict[str, Any] | None = None  # its usage record, written in the same transaction


@dataclass(frozen=True, slots=True)
class ClaimedLine:
    batch_seq: int
    batch_id: str
    line: int
    custom_id: str
    body: dict[str, Any]
    attempts: int


class BatchStore:
    """Batches on one database."""

    def __init__(self, database: Database):
        self._sessions = database.sessions

    # --- the batch ------------------------------------------------------------------------

    async def insert(self, new: NewBatch) -> StoredBatch:
        async with self._sessions.begin() as session:
            return await session.scalar(
                insert(StoredBatch)
                .values(
                    id=new.id,
                    owner=new.owner,
                    key_id=new.key_id,
                    principal=new.principal,
                    endpoint=new.endpoint,
                    input_file_id=new.input_file_id,
                    completion_window=new.completion_window,
                    status=BatchStatus.VALIDATING,
                    times={"created_at": new.created_at, "expires_at": new.expires_at},
                    expires_at=new.expires_at,
                    metadata_=new.metadata,
                    output_expires_after=new.output_expires_after,
                    attempts=0,
                    request_id=new.request_id,
                )
                .returning(StoredBatch)
            )

    async def get(self, owner: str, batch_id: str) -> StoredBatch | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(StoredBatch).where(StoredBatch.owner == owner, StoredBatch.id == batch_id)
            )

    async def by_id(self, batch_id: str) -> StoredBatch | None:
        async with self._sessions() as session:
            return await session.scalar(select(StoredBatch).where(StoredBatch.id == batch_id))

    async def list(
        self, owner: str, limit: int, after: str | None
    ) -> tuple[list[StoredBatch], bool]:
        """The owner's batches, newest first, and whether there are more."""
        query = select(StoredBatch).where(StoredBatch.owner == owner)
        async with self._sessions() as session:
            if after is not None:
                cursor = await session.scalar(
                    select(StoredBatch.seq).where(
                        StoredBatch.owner == owner, StoredBatch.id == after
                    )
                )
                if cursor is None:
                    raise UnknownBatchCursor(after)
                query = query.where(StoredBatch.seq < cursor)
            rows = list(
                await session.scalars(query.order_by(StoredBatch.seq.desc()).limit(limit + 1))
            )
        return rows[:limit], len(rows) > limit

    async def cancel(self, owner: str, batch_id: str, now: int) -> StoredBatch | None:
        """Mark a batch cancelling, if it has not ended yet; the batch as it now is."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(StoredBatch)
                .where(StoredBatch.owner == owner, StoredBatch.id == batch_id)
                .with_for_update()
            )
            if row is None:
                return None
            if row.status in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
                row.status = BatchStatus.CANCELLING
                row.times = {**row.times, "cancelling_at": now}
            return row

    async def claim(self, worker_id: str, now: float, lease_s: float) -> StoredBatch | None:
        """Take the oldest batch that needs a worker of its own: to validate; to write its end
        (every line done, cancelled with no line running, or past its window); to follow
        upstream. Counts the attempt."""
        open_lines = exists().where(
            BatchLine.batch_seq == StoredBatch.seq,
            BatchLine.state.in_(OPEN),
        )
        running_lines = exists().where(
            BatchLine.batch_seq == StoredBatch.seq,
            BatchLine.state == LineState.RUNNING,
            BatchLine.lease_expires_at >= now,
        )
        needs_work = or_(
            StoredBatch.status.in_((BatchStatus.VALIDATING, BatchStatus.FINALIZING)),
            and_(StoredBatch.status == BatchStatus.CANCELLING, ~running_lines),
            and_(
                StoredBatch.status == BatchStatus.IN_PROGRESS,
                or_(
                    StoredBatch.upstream.is_not(None),
                    StoredBatch.expires_at <= now,
                    ~open_lines,
                ),
            ),
        )
        free = or_(StoredBatch.worker_id.is_(None), StoredBatch.lease_expires_at < now)
        oldest = (
            select(StoredBatch.seq)
            .where(needs_work, free)
            .order_by(StoredBatch.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(StoredBatch)
                .where(StoredBatch.seq == oldest, free)
                .values(
                    worker_id=worker_id,
                    lease_expires_at=now + lease_s,
                    attempts=StoredBatch.attempts + 1,
                )
                .returning(StoredBatch)
            )

    async def renew_any(self, worker_id: str, until: float) -> None:
        """Extend the lease of whatever batch this worker holds."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(StoredBatch)
                .where(StoredBatch.worker_id == worker_id)
                .values(lease_expires_at=until)
            )

    async def let_go(self, worker_id: str) -> None:
        """The worker stops: whatever batch it holds may be claimed again at once."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(StoredBatch)
                .where(StoredBatch.worker_id == worker_id)
                .values(worker_id=None, lease_expires_at=None)
            )

    async def update_held(self, batch_id: str, worker_id: str, **values: Any) -> StoredBatch | None:
        """Write `values` on a batch this worker holds, and let go of it; None if it is not
        held any more (nothing written)."""
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(StoredBatch)
                .where(StoredBatch.id == batch_id, StoredBatch.worker_id == worker_id)
                .values(**values, worker_id=None, lease_expires_at=None)
                .returning(StoredBatch)
            )

    async def keep_held(self, batch_id: str, worker_id: str, **values: Any) -> bool:
        """Write `values` on a batch this worker holds, keeping hold of it."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredBatch)
                .where(StoredBatch.id == batch_id, StoredBatch.worker_id == worker_id)
                .values(**values)
            )
            return result.rowcount > 0

    async def start_lines(
        self,
        batch: StoredBatch,
        worker_id: str,
        slices: AsyncIterable[Sequence[NewLine]],
        *,
        total: int,
        model: str | None,
        upstream: dict[str, Any] | None,
        now: int,
    ) -> bool:
        """The input was valid: write its lines and put the batch in progress, in one
        transaction (a cancel that came during validation wins: nothing is written)."""
        async with self._sessions.begin() as session:
            held = await session.scalar(
                update(StoredBatch)
                .where(
                    StoredBatch.id == batch.id,
                    StoredBatch.worker_id == worker_id,
                    StoredBatch.status == BatchStatus.VALIDATING,
                )
                .values(
                    status=BatchStatus.IN_PROGRESS,
                    model=model,
                    # SQL NULL, not JSON null: the queues ask `upstream IS NULL`.
                    upstream=upstream if upstream is not None else null(),
                    times={**batch.times, "in_progress_at": now},
                    request_counts={"total": total, "completed": 0, "failed": 0},
                    worker_id=None,
                    lease_expires_at=None,
                )
                .returning(StoredBatch.seq)
            )
            if held is None:
                return False
            async for lines in slices:
                rows = [
                    {
                        "batch_seq": held,
                        "line": line.line,
                        "custom_id": line.custom_id,
                        "body": line.body,
                        "state": LineState.PENDING,
                        "attempts": 0,
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "cached_tokens": 0,
                    }
                    for line in lines
                ]
                for start in range(0, len(rows), _INSERT_SLICE):
                    await session.execute(insert(BatchLine), rows[start : start + _INSERT_SLICE])
            return True

    # --- its lines ------------------------------------------------------------------------

    async def claim_lines(
        self, worker_id: str, now: float, lease_s: float, count: int
    ) -> list[ClaimedLine]:
        """Take up to `count` runnable lines — pending (and not waiting on their rate limit),
        or running under an expired lease — of batches in progress on the workers. One
        UPDATE over a locking subquery: concurrent claimants never take the same line, and
        on SQLite (one writer at a time) each still gets lines rather than losing a race."""
        runnable = and_(
            or_(
                BatchLine.state == LineState.PENDING,
                and_(BatchLine.state == LineState.RUNNING, BatchLine.lease_expires_at < now),
            ),
            or_(BatchLine.not_before.is_(None), BatchLine.not_before <= now),
        )
        picked = (
            select(BatchLine.batch_seq, BatchLine.line)
            .join(StoredBatch, StoredBatch.seq == BatchLine.batch_seq)
            .where(
                runnable,
                StoredBatch.status == BatchStatus.IN_PROGRESS,
                StoredBatch.upstream.is_(None),
                StoredBatch.expires_at > now,
            )
            .order_by(BatchLine.batch_seq, BatchLine.line)
            .limit(count)
            .with_for_update(skip_locked=True, of=BatchLine)
        )
        async with self._sessions.begin() as session:
            rows = list(
                await session.scalars(
                    update(BatchLine)
                    .where(tuple_(BatchLine.batch_seq, BatchLine.line).in_(picked), runnable)
                    .values(
                        state=LineState.RUNNING,
                        worker_id=worker_id,
                        lease_expires_at=now + lease_s,
                        attempts=BatchLine.attempts + 1,
                    )
                    .returning(BatchLine)
                )
            )
            if not rows:
                return []
            ids = dict(
                (
                    await session.execute(
                        select(StoredBatch.seq, StoredBatch.id).where(
                            StoredBatch.seq.in_({row.batch_seq for row in rows})
                        )
                    )
                ).all()
            )
        return [
            ClaimedLine(
                row.batch_seq, ids[row.batch_seq], row.line, row.custom_id, row.body, row.attempts
            )
            for row in sorted(rows, key=lambda row: (row.batch_seq, row.line))
        ]

    async def renew_lines(
        self, batch_seq: int, lines: Sequence[int], worker_id: str, until: float
    ) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(BatchLine)
                .where(*_line_held(batch_seq, lines, worker_id))
                .values(lease_expires_at=until)
            )

    async def finish_line(self, batch_seq: int, line: int, worker_id: str, end: LineEnd) -> bool:
        """Write a line's end and its usage record; False (nothing written) when the line is
        no longer this worker's."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(BatchLine)
                .where(*_line_held(batch_seq, [line], worker_id))
                .values(
                    state=end.state,
                    result=end.result,
                    input_tokens=end.input_tokens,
                    output_tokens=end.output_tokens,
                    cached_tokens=end.cached_tokens,
                    worker_id=None,
                    lease_expires_at=None,
                )
            )
            if result.rowcount == 0:
                return False
            if end.usage is not None:
                await insert_records(session, [end.usage])
            return True

    async def release_line(
        self, batch_seq: int, line: int, worker_id: str, not_before: float | None
    ) -> bool:
        """Give a line back unanswered (its rate limit is full, or its worker stops); the
        attempt does not count."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(BatchLine)
                .where(*_line_held(batch_seq, [line], worker_id))
                .values(
                    state=LineState.PENDING,
                    worker_id=None,
                    lease_expires_at=None,
                    not_before=not_before,
                    attempts=BatchLine.attempts - 1,
                )
            )
            return result.rowcount > 0

    async def close_open_lines(self, batch_seq: int, result_of: Any) -> int:
        """The batch ends (cancelled, expired): every line not done fails, with the error line
        `result_of(custom_id)`; a worker still on one can no longer write it."""
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(BatchLine.line, BatchLine.custom_id).where(
                        BatchLine.batch_seq == batch_seq, BatchLine.state.in_(OPEN)
                    )
                )
            ).all()
            for line, custom_id in rows:
                await session.execute(
                    update(BatchLine)
                    .where(BatchLine.batch_seq == batch_seq, BatchLine.line == line)
                    .values(
                        state=LineState.FAILED,
                        result=result_of(custom_id),
                        worker_id=None,
                        lease_expires_at=None,
                    )
                )
            return len(rows)

    async def counts(self, batch_seq: int) -> LineCounts:
        line = BatchLine
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.sum(case((line.state == LineState.SUCCEEDED, 1), else_=0)),
                        func.sum(case((line.state == LineState.FAILED, 1), else_=0)),
                        func.sum(line.input_tokens),
                        func.sum(line.output_tokens),
                        func.sum(line.cached_tokens),
                    ).where(line.batch_seq == batch_seq)
                )
            ).one()
        total, succeeded, failed = int(row[0]), int(row[1] or 0), int(row[2] or 0)
        return LineCounts(
            total=total,
            succeeded=succeeded,
            failed=failed,
            open=total - succeeded - failed,
            input_tokens=int(row[3] or 0),
            output_tokens=int(row[4] or 0),
            cached_tokens=int(row[5] or 0),
        )

    async def results(
        self, batch_seq: int, state: LineState, after_line: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """One page of the done lines in `state`, in input order: (line, output line)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(BatchLine.line, BatchLine.result)
                .where(
                    BatchLine.batch_seq == batch_seq,
                    BatchLine.state == state,
                    BatchLine.line > after_line,
                )
                .order_by(BatchLine.line)
                .limit(limit)
            )
            return [(line, result) for line, result in rows.all()]

    async def lines(self, batch_seq: int, after_line: int, limit: int) -> list[BatchLine]:
        """One page of the batch's lines, in input order (upstream mode sends them on)."""
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(BatchLine)
                    .where(BatchLine.batch_seq == batch_seq, BatchLine.line > after_line)
                    .order_by(BatchLine.line)
                    .limit(limit)
                )
            )

    async def finish_upstream_lines(self, batch_seq: int, ends: dict[str, LineEnd]) -> set[str]:
        """Write the ends of open lines by custom_id (an upstream batch's results), each with
        its usage record; lines already done are left as they are. The custom_ids written."""
        written: set[str] = set()
        async with self._sessions.begin() as session:
            for custom_id, end in ends.items():
                result = await session.execute(
                    update(BatchLine)
                    .where(
                        BatchLine.batch_seq == batch_seq,
                        BatchLine.custom_id == custom_id,
                        BatchLine.state.in_(OPEN),
                    )
                    .values(
                        state=end.state,
                        result=end.result,
                        input_tokens=end.input_tokens,
                        output_tokens=end.output_tokens,
                        cached_tokens=end.cached_tokens,
                    )
                )
                if result.rowcount:
                    written.add(custom_id)
                    if end.usage is not None:
                        await insert_records(session, [end.usage])
        return written


def _line_held(batch_seq: int, lines: Sequence[int], worker_id: str) -> tuple:
    return (
        BatchLine.batch_seq == batch_seq,
        BatchLine.line.in_(list(lines)),
        BatchLine.state == LineState.RUNNING,
        BatchLine.worker_id == worker_id,
    )
