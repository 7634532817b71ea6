"""The worker that runs background responses, in the server process or in `aiservice worker`.

Jobs are rows of the responses table (see store/responses.py). A worker claims the oldest
runnable job under a lease and, while the job runs, checks every `poll_s` that it still holds it
(a cancel or a take-over ends the job within that time) and renews the lease well before it runs
out. A worker that is stopped hands its jobs back; one that is killed stops renewing, and the
jobs are claimed again once their lease has expired, up to `max_attempts` starts in all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, replace

from aiservice.errors import AIServiceError, as_service_error
from aiservice.metering.ledger import CLIENT_CLOSED_REQUEST, UsageLedger, table_row
from aiservice.metering.meter import Meter, metering
from aiservice.services.event_hub import EventHub
from aiservice.services.response_body import ResponseState
from aiservice.services.response_run import FINAL_EVENT_TYPES, Event, ResponseRun, final_state
from aiservice.services.responses import ResponseService
from aiservice.store.response_status import ResponseStatus
from aiservice.store.responses import Outcome, ResponseStore
from aiservice.store.tables import StoredResponse

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    concurrency: int = 2
    lease_s: float = 30.0
    poll_s: float = 0.5
    max_attempts: int = 3


class BackgroundWorker:
    """Claims and runs jobs until stopped; several can share one database."""

    def __init__(
        self,
        store: ResponseStore,
        responses: ResponseService,
        settings: WorkerSettings,
        ledger: UsageLedger | None = None,
    ):
        self._store = store
        self._responses = responses
        self._settings = settings
        self._ledger = ledger
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._handing_back = False

    def wake(self) -> None:
        """A job was just enqueued in this process: look now rather than at the next poll."""
        self._wake.set()

    def cancelled(self, response_id: str) -> None:
        """A job was cancelled in this process: stop it now rather than at the next check."""
        task = self._jobs.get(response_id)
        if task is not None:
            task.cancel()

    async def run(self) -> None:
        log.info(
            "worker started",
            extra={"worker": self.worker_id, "concurrency": self._settings.concurrency},
        )
        try:
            async with AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(
                        self._store.notifications(self.wake, self.cancelled)
                    )
                except Exception as exc:  # polling alone still finds every job
                    log.warning(
                        "job notifications unavailable; polling only",
                        extra={"error_type": type(exc).__name__},
                    )
                while True:
                    self._wake.clear()
                    await self._claim_what_fits()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)
        finally:
            await self._hand_back()

    async def _claim_what_fits(self) -> None:
        while len(self._jobs) < self._settings.concurrency:
            try:
                row = await self._store.claim(self.worker_id, time.time(), self._settings.lease_s)
            except Exception as exc:  # the database is away: try again at the next poll
                log.error("job claim failed", extra={"error_type": type(exc).__name__})
                return
            if row is None:
                return
            task = asyncio.create_task(self._run(row))
            self._jobs[row.id] = task
            task.add_done_callback(lambda _task, job_id=row.id: self._finished(job_id))

    def _finished(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _run(self, row: StoredResponse) -> None:
        meter = Meter("/v1/responses", row.request_id or row.id, background=True)
        meter.owner, meter.key_id = row.owner, row.key_id
        meter.requested(
            row.request.get("model", row.model),
            row.request.get("metadata"),
            row.request.get("safety_identifier") or row.request.get("user"),
        )
        with metering(meter):
            status_code = await self._run_metered(row, meter)
        if status_code is not None and self._ledger is not None:
            self._ledger.record(meter, status_code)

    async def _run_metered(self, row: StoredResponse, meter: Meter) -> int | None:
        """Run the job; the status its usage record gets if the ledger is to record it, or
        None: written with the job's end, or not this worker's to write (the job was taken
        over, or handed back: it is recorded where it ends)."""
        if row.attempts > self._settings.max_attempts:
            outcome = _out_of_attempts(row)
            meter.failed(AIServiceError("The response was interrupted.", code="interrupted"))
        else:
            waited_ms = (time.time() - row.queued_at) * 1000 if row.queued_at else None
            log.info(
                "background job started",
                extra={
                    "response_id": row.id,
                    "attempt": row.attempts,
                    "worker": self.worker_id,
                    "waited_ms": round(waited_ms, 2) if waited_ms is not None else None,
                },
            )
            outcome = await self._outcome(row, meter)
        if outcome is None:
            # Cancelled or taken over: whoever did that wrote the end.
            if await self._store.status(row.id) == ResponseStatus.CANCELLED:
                log.info(
                    "background job finished",
                    extra={"response_id": row.id, "status": ResponseStatus.CANCELLED},
                )
                meter.interrupted = True
                return CLIENT_CLOSED_REQUEST
            return None
        if outcome.status != ResponseStatus.FAILED:
            status_code = 200
        else:
            status_code = meter.error.status_code if meter.error is not None else 500
        ledger, usage = self._ledger, None
        if ledger is not None:  # the record is written with the end, in one transaction
            usage = ledger.priced(meter, status_code)
            outcome = replace(outcome, usage=table_row(usage))
        finished = await self._store.finish(row.id, self.worker_id, outcome)
        self._responses.event_hub.notify(row.id)
        if not finished:
            return None
        log.info(
            "background job finished",
            extra={"response_id": row.id, "status": outcome.status, "attempt": row.attempts},
        )
        if ledger is not None and usage is not None:
            await ledger.written(usage)
        return None

    async def _outcome(self, row: StoredResponse, meter: Meter) -> Outcome | None:
        try:
            prepared = await self._responses.prepare_job(row)
            prepared.state.status = ResponseStatus.IN_PROGRESS
            await self._store.mark_started(row.id, self.worker_id, prepared.state.body())
            if prepared.request.stream:
                first = await self._store.last_event_number(row.id) + 1
                run = ResponseRun(prepared.state, prepared.generation, first)
                recording = EventRecording(self._store, self._responses.event_hub, row.id)
                work = asyncio.ensure_future(recording.run(run, self.worker_id))
            else:
                work = asyncio.ensure_future(
                    _unrecorded(ResponseRun(prepared.state, prepared.generation))
                )
            if not await self._watch(row.id, work):
                return None
            state, last_events = work.result()
            return ResponseService.outcome(prepared, state, last_events)
        except asyncio.CancelledError:
            if self._handing_back:
                raise
            return None  # cancelled in this process: the cancel has written the end
        except Exception as exc:
            error = as_service_error(exc)
            meter.failed(error)
            if error.status_code >= 500:
                log.error("background job failed", extra={"error_type": type(exc).__name__})
            code = "server_error" if error.status_code >= 500 else "invalid_prompt"
            body = ResponseService.failed_body(row, error.message, code)
            return Outcome(ResponseStatus.FAILED, body, row.model, 0, 0)

    async def _watch(self, response_id: str, work: asyncio.Future) -> bool:
        """Wait for `work`, checking that the job is still ours and renewing its lease; True
        if it ended while still ours, else it is stopped."""
        settings = self._settings
        renew_every = settings.lease_s / 3
        renewed_at = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=settings.poll_s)
                if done:
                    return True
                if time.monotonic() - renewed_at >= renew_every:
                    held = await self._store.renew(
                        response_id, self.worker_id, time.time() + settings.lease_s
                    )
                    renewed_at = time.monotonic()
                else:
                    held = await self._store.still_held(response_id, self.worker_id)
                if not held:
                    log.info("background job stopped", extra={"response_id": response_id})
                    return False
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def _hand_back(self) -> None:
        """Stopping: put running jobs back in the queue for the next worker."""
        self._handing_back = True
        jobs = dict(self._jobs)
        for task in jobs.values():
            task.cancel()
        await asyncio.gather(*jobs.values(), return_exceptions=True)
        for job_id in jobs:
            try:
                if await self._store.release(job_id, self.worker_id):
                    log.info("background job handed back", extra={"response_id": job_id})
            except Exception as exc:
                log.error("job hand-back failed", extra={"error_type": type(exc).__name__})


class EventRecording:
    """Runs a streamed job, recording its events in batches (every `flush_s`) so that any
    process can stream them; the last batch is written with the job's end."""

    def __init__(self, store: ResponseStore, hub: EventHub, response_id: str, flush_s=0.1):
        self._store = store
        self._hub = hub
        self._response_id = response_id
        self._flush_s = flush_s

    async def run(self, run: ResponseRun, worker_id: str) -> tuple[ResponseState, list[Event]]:
        pending: list[Event] = list(run.started())
        flushed_at = time.monotonic()
        async for event in run.events():
            pending.append(event)
            due = time.monotonic() - flushed_at >= self._flush_s
            if due and event["type"] not in FINAL_EVENT_TYPES:
                await self._store.append_events(self._response_id, worker_id, pending)
                self._hub.notify(self._response_id)
                pending, flushed_at = [], time.monotonic()
        return run.state, pending  # the last batch is written by finish(), with the end


def _out_of_attempts(row: StoredResponse) -> Outcome:
    started = row.attempts - 1
    log.warning(
        "background job abandoned: out of attempts",
        extra={"response_id": row.id, "attempts": started},
    )
    body = ResponseService.failed_body(
        row,
        f"The response was interrupted before it could complete (started {started} "
        f"time{'s' if started != 1 else ''}); it is not tried again.",
    )
    return Outcome(ResponseStatus.FAILED, body, row.model, 0, 0)


async def _unrecorded(run: ResponseRun) -> tuple[ResponseState, list[Event]]:
    return await final_state(run), []
