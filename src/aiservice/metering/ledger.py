"""The usage ledger: one record per model request, priced, kept in memory and written to the
database in batches by a background task, so that no request waits on the write.

Listeners (metrics, budgets) see each record as it is taken, and each batch once written.
`close()` writes what is left: a clean stop loses nothing. A failed write keeps the batch and
tries again at the next flush. With a journal, each record is also appended to a local file as
it is taken, so that a killed process loses none either (metering/journal.py). A background
job's record is not batched: its worker writes it with the job's end (`priced`, `written`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiservice.metering.journal import UsageJournal, replay_dead_journals
from aiservice.metering.meter import Meter
from aiservice.metering.pricing import PriceList
from aiservice.store.usage import UsageStore

log = logging.getLogger(__name__)

Record = dict[str, Any]  # a usage_records row, by column name
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"
# Beyond this many unwritten records (the database down for long), the oldest are dropped
# with an error line rather than growing without bound.
_MAX_PENDING = 100_000


class UsageLedger:
    def __init__(
        self,
        store: UsageStore,
        prices: PriceList,
        *,
        flush_s: float = 1.0,
        batch_size: int = 500,
    ):
        self._store = store
        self._journal: UsageJournal | None = None
        self.prices = prices
        self._flush_s = flush_s
        self._batch_size = batch_size
        self._pending: list[Record] = []
        self._writing: list[Record] = []  # the batch being written
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.on_record: list[Callable[[Record], None]] = []
        self.on_written: list[Callable[[list[Record]], Awaitable[None]]] = []

    def record(self, meter: Meter, status_code: int) -> Record:
        """Price and keep the request's record; written with the next batch."""
        row = self.priced(meter, status_code)
        if self._journal is not None:
            self._journal.append(table_row(row))
        self._pending.append(row)
        self._taken(row)
        if len(self._pending) >= self._batch_size:
            self._wake.set()
        return row

    def priced(self, meter: Meter, status_code: int) -> Record:
        """The request's record, for a caller that writes it itself (`written` after)."""
        error = meter.error
        if status_code < 400:  # a stream's 200 was sent before it ended
            if error is not None:
                status_code = error.status_code
            elif meter.interrupted:
                status_code = CLIENT_CLOSED_REQUEST
        model = meter.model_served
        return {
            "record_id": secrets.token_hex(16),
            "created_at": meter.started_at,
            "day": time.strftime("%Y-%m-%d", time.gmtime(meter.started_at)),
            "request_id": meter.request_id,
            "owner": meter.owner,
            "key_id": meter.key_id,
            "route": meter.route,
            "background": meter.background,
            "model_requested": meter.model_requested,
            "model_served": model,
            "provider": self.prices.provider(model),
            "input_tokens": meter.input_tokens if model else 0,
            "output_tokens": meter.output_tokens,
            "cached_tokens": meter.cached_tokens,
            "cost_usd": self.prices.cost(
                model, meter.input_tokens, meter.output_tokens, batch=meter.batch
            )
            if model
            else 0.0,
            "latency_ms": round(meter.latency_ms, 3),
            "ttft_ms": round(meter.ttft_ms, 3) if meter.ttft_ms is not None else None,
            "status_code": status_code,
            "error_code": (error.code or error.error_type) if error is not None else None,
            "upstream_attempts": len(meter.attempts),
            "priority": meter.priority,
            "wait_ms": round(meter.wait_ms, 3) if meter.wait_ms is not None else None,
            # Zero data retention: counts and cost only, nothing that says what it was about.
            "metadata": {} if meter.zero_retention else meter.metadata,
            "end_user": None if meter.zero_retention else meter.end_user,
            # Not a column: read by the metrics listener, dropped before the write.
            "_attempts": meter.attempts,
        }

    async def written(self, row: Record) -> None:
        """`row` (from `priced`) is in the database, written by its caller: tell the listeners,
        as if it had been taken and written here."""
        self._taken(row)
        await self._tell_written([row])

    def _taken(self, row: Record) -> None:
        for listener in self.on_record:
            try:
                listener(row)
            except Exception as exc:  # a listener's fault must not cost the request its record
                log.error("usage listener failed", extra={"error_type": type(exc).__name__})

    async def start(self, journal_dir: Path | None = None) -> None:
        """Begin writing batches; with `journal_dir`, first write what dead processes left in
        their journals there, then journal this process's records there too."""
        if journal_dir is not None:
            await replay_dead_journals(journal_dir, self._store.insert_many)
            self._journal = UsageJournal(journal_dir)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.error("usage ledger write failed", extra={"error_type": type(exc).__name__})

    async def flush(self) -> int:
        """Write every record taken so far; returns how many were written."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return 0
            # The sealed segments hold exactly this batch (and earlier failed ones in it).
            segments = self._journal.seal() if self._journal is not None else []
            self._writing = batch
            try:
                await self._store.insert_many([table_row(row) for row in batch])
            except BaseException:
                self._pending = (batch + self._pending)[-_MAX_PENDING:]
                raise
            finally:
                self._writing = []
            if self._journal is not None:
                self._journal.discard(segments)
        await self._tell_written(batch)
        return len(batch)

    async def _tell_written(self, batch: list[Record]) -> None:
        for listener in self.on_written:
            try:
                await listener(batch)
            except Exception as exc:
                log.error("usage listener failed", extra={"error_type": type(exc).__name__})

    def writes_paused(self) -> asyncio.Lock:
        """Held, no batch is being written: the database and `unwritten` then agree on which
        records are where (budgets read both at once)."""
        return self._lock

    @property
    def unwritten(self) -> list[Record]:
        """Records taken but not yet in the database (budgets count them as spent)."""
        return self._writing + self._pending

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            written = await self.flush()
        except Exception as exc:
            log.error(
                "usage records not written at shutdown",
                extra={
                    "error_type": type(exc).__name__,
                    "records": len(self._pending),
                    "journaled": self._journal is not None,  # replayed at the next start
                },
            )
            if self._journal is not None:
                self._journal.close(everything_written=False)
            return
        if self._journal is not None:
            self._journal.close(everything_written=True)
        if written:
            log.info("usage records written at shutdown", extra={"records": written})


def table_row(row: Record) -> Record:
    """The row as the table takes it: without the listeners' extras."""
    return {k: v for k, v in row.items() if not k.startswith("_")}
