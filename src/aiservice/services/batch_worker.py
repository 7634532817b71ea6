"""The worker side of the Batch API, next to the background-response worker in every process
that runs one (the server, `aiservice worker`).

Each poll it takes one batch that needs a worker of its own — to check its input file, to
write its end, or to follow its upstream batch — and as many lines as it has free slots.
It holds both under leases it renews while they run; a worker killed mid-line stops renewing
and the line is taken again once its lease has run out, by whoever is alive (up to
`max_attempts` starts). Its usage record is written with its end, so it is charged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import Any

from aiservice.errors import NotFound
from aiservice.governance.accounts import Principal
from aiservice.metering.ledger import UsageLedger
from aiservice.services.background import WorkerSettings
from aiservice.services.batch_endpoints import BatchEndpoints
from aiservice.services.batch_finish import BatchFinisher, end_of
from aiservice.services.batch_input import check_input, parsed_lines
from aiservice.services.batch_line_run import BatchContext, LineRunner, not_run_line
from aiservice.services.files import FileService
from aiservice.store.batch_status import BatchStatus, LineState
from aiservice.store.batches import BatchStore, ClaimedLine, LineEnd
from aiservice.store.tables import StoredBatch

log = logging.getLogger(__name__)

UpstreamFollower = Callable[[StoredBatch, str], Awaitable[None]]
# An upstream batch is followed until it ends, a cancel included (the upstream's is asked for).
_FOLLOWED = (BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING)


class BatchWorker:
    """Runs batches until stopped; several can share one database."""

    def __init__(
        self,
        store: BatchStore,
        files: FileService,
        endpoints: BatchEndpoints,
        lines: LineRunner,
        settings: WorkerSettings,
        ledger: UsageLedger | None = None,
        upstream: UpstreamFollower | None = None,
        upstream_models: Mapping[str, Any] = MappingProxyType({}),
    ):
        self._store = store
        self._files = files
        self._endpoints = endpoints
        self._lines = lines
        self._settings = settings
        self._ledger = ledger
        self._upstream = upstream
        self._upstream_models = upstream_models  # names of models whose batches go upstream
        self._finisher = BatchFinisher(store, files)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-b{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._running: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._batch_job: asyncio.Task[None] | None = None
        self._contexts: dict[int, BatchContext] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        renewing = asyncio.create_task(self._renew_periodically())
        try:
            while True:
                self._wake.clear()
                try:
                    await self._claim_batch()
                    await self._claim_lines()
                except Exception as exc:  # the database is away: try again at the next poll
                    log.error("batch claim failed", extra={"error_type": type(exc).__name__})
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)
        finally:
            renewing.cancel()
            await self._hand_back()

    # --- batches --------------------------------------------------------------------------

    async def _claim_batch(self) -> None:
        if self._batch_job is not None:
            return
        row = await self._store.claim(self.worker_id, time.time(), self._settings.lease_s)
        if row is None:
            return
        self._batch_job = asyncio.create_task(self._batch_work(row))
        self._batch_job.add_done_callback(self._batch_done)

    def _batch_done(self, _task: asyncio.Task[None]) -> None:
        self._batch_job = None
        self._wake.set()

    async def _batch_work(self, row: StoredBatch) -> None:
        try:
            if row.attempts > self._settings.max_attempts + 2:
                await self._finisher.fail(row, self.worker_id, [_gave_up()])
            elif row.status == BatchStatus.VALIDATING:
                await self._validate(row)
            elif row.upstream is not None and row.status in _FOLLOWED:
                if self._upstream is None or row.expires_at <= time.time():
                    await self._finisher.finish(row, self.worker_id, end_of(row, time.time()))
                else:
                    await self._upstream(row, self.worker_id)
            else:
                end = end_of(row, time.time())
                if await self._finisher.finish(row, self.worker_id, end):
                    log.info("batch finished", extra={"batch_id": row.id, "status": end})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its lease runs out and another try comes
            log.error("batch work failed", extra={"error_type": type(exc).__name__})

    async def _validate(self, row: StoredBatch) -> None:
        try:
            source = await self._files.row(row.owner, row.input_file_id)
        except NotFound:
            gone = _error("invalid_file", f"The input file {row.input_file_id} was deleted.")
            await self._finisher.fail(row, self.worker_id, [gone])
            return
        found = await check_input(self._files.read_all(source), row.endpoint, self._endpoints)
        errors = found.errors
        if not errors and found.lines == 0:
            errors = [_error("empty_file", "The input file holds no request.")]
        if errors:
            await self._finisher.fail(row, self.worker_id, errors)
            log.info("batch failed validation", extra={"batch_id": row.id, "errors": len(errors)})
            return
        model = found.models[0] if found.models else None
        upstream = self._upstream_of(row.endpoint, found.models)
        if isinstance(upstream, list):
            await self._finisher.fail(row, self.worker_id, upstream)
            return
        slices = self._endpoints.screened(
            row.endpoint,
            Principal(**row.principal),
            parsed_lines(self._files.read_all(source), row.endpoint, self._endpoints),
        )
        started = await self._store.start_lines(
            row,
            self.worker_id,
            slices,
            total=found.lines,
            model=model,
            upstream=upstream,
            now=int(time.time()),
        )
        if started:
            log.info("batch started", extra={"batch_id": row.id, "lines": found.lines})
        else:  # cancelled meanwhile: its end is for the next claim to write
            await self._store.let_go(self.worker_id)
        self._wake.set()

    def _upstream_of(
        self, endpoint: str, models: list[str]
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        """Where the batch's lines go: None for this process's workers; the upstream batch to
        make (`{"model"}`) when its model sends batches upstream; or the errors when such a
        model is mixed with others (one upstream batch holds one model)."""
        served = {self._endpoints.served_by(endpoint, model) for model in models}
        sent_upstream = served & self._upstream_models.keys()
        if not sent_upstream:
            return None
        if len(served) > 1:
            message = (
                f"The model {sorted(sent_upstream)[0]} runs batches on its upstream's Batch API: "
                "all the lines of such a batch must ask for that model."
            )
            return [_error("mismatched_model", message)]
        return {"model": sent_upstream.pop()}

    # --- lines ----------------------------------------------------------------------------

    async def _claim_lines(self) -> None:
        free = self._settings.concurrency - len(self._running)
        if free <= 0:
            return
        claimed = await self._store.claim_lines(
            self.worker_id, time.time(), self._settings.lease_s, free
        )
        for line in claimed:
            task = asyncio.create_task(self._run_line(line))
            key = (line.batch_seq, line.line)
            self._running[key] = task
            task.add_done_callback(lambda _task, key=key: self._line_done(key))

    def _line_done(self, key: tuple[int, int]) -> None:
        self._running.pop(key, None)
        self._wake.set()

    async def _context(self, line: ClaimedLine) -> BatchContext:
        context = self._contexts.get(line.batch_seq)
        if context is None:
            row = await self._store.by_id(line.batch_id)
            assert row is not None  # a line's batch is deleted with it
            context = BatchContext.of(row)
            if len(self._contexts) > 1000:
                self._contexts.clear()
            self._contexts[line.batch_seq] = context
        return context

    async def _run_line(self, line: ClaimedLine) -> None:
        if line.attempts > self._settings.max_attempts:
            message = "The request was interrupted too many times; it is not tried again."
            end = LineEnd(LineState.FAILED, not_run_line(line.custom_id, "interrupted", message))
            await self._store.finish_line(line.batch_seq, line.line, self.worker_id, end)
            return
        try:
            outcome = await self._lines.run(await self._context(line), line)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease runs out and the line is tried again
            log.error("batch line crashed", extra={"error_type": type(exc).__name__})
            return
        if outcome.end is None:  # its rate limit is full: later, lines of others first
            await self._store.release_line(
                line.batch_seq, line.line, self.worker_id, outcome.retry_at
            )
            return
        usage = outcome.usage
        end = outcome.end
        if usage is not None:
            end = LineEnd(
                end.state,
                end.result,
                end.input_tokens,
                end.output_tokens,
                end.cached_tokens,
                {k: v for k, v in usage.items() if not k.startswith("_")},
            )
        written = await self._store.finish_line(line.batch_seq, line.line, self.worker_id, end)
        if written and usage is not None and self._ledger is not None:
            await self._ledger.written(usage)

    # --- leases ---------------------------------------------------------------------------

    async def _renew_periodically(self) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(settings.lease_s / 3)
            until = time.time() + settings.lease_s
            try:
                by_batch: dict[int, list[int]] = {}
                for batch_seq, line in list(self._running):
                    by_batch.setdefault(batch_seq, []).append(line)
                for batch_seq, lines in by_batch.items():
                    await self._store.renew_lines(batch_seq, lines, self.worker_id, until)
                if self._batch_job is not None:
                    await self._store.renew_any(self.worker_id, until)
            except Exception as exc:
                log.error("batch lease renewal failed", extra={"error_type": type(exc).__name__})

    async def _hand_back(self) -> None:
        """Stopping: put running lines back for the next worker."""
        tasks = [*self._running.values(), *([self._batch_job] if self._batch_job else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch_seq, line in list(self._running):
            with suppress(Exception):
                await self._store.release_line(batch_seq, line, self.worker_id, None)
        with suppress(Exception):
            await self._store.let_go(self.worker_id)


def _error(code: str, message: str) -> dict[str, object]:
    return {"code": code, "message": message, "param": None, "line": None}


def _gave_up() -> dict[str, object]:
    return _error("interrupted", "The batch was interrupted too many times while it was checked.")
