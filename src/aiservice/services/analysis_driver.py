"""The worker side of document analysis: start each stage's jobs once the last stage's have
all ended, in every process that runs workers.

An analysis is claimed under a lease, looked at, and left with its lease set to the next look
(`poll_s` on), so any worker may take the next step. Steps: a queued analysis gets one map job
per piece; a stage whose jobs have all ended gets its answers read, and the next stage its
jobs — one report job when the key points fit one request, else reduce jobs over groups of
them — or, after the report, the analysis ends. A job that failed, or whose answer is off the
schema, gives no points; an analysis none of whose pieces gave points fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from contextlib import suppress
from typing import Any

from aiservice.governance.accounts import Principal
from aiservice.metering.meter import Meter, metering
from aiservice.services.analysis_prompts import stage_request
from aiservice.services.analysis_schemas import AnswerRejected, KeyPoints, Report, parse
from aiservice.services.background import WorkerSettings
from aiservice.services.document_analysis import AnalysisService
from aiservice.services.responses import ResponseService
from aiservice.store.response_status import UNFINISHED, ResponseStatus
from aiservice.store.responses import ResponseStore
from aiservice.store.tables import DocumentAnalysis
from aiservice.tokens import estimate_tokens

log = logging.getLogger(__name__)

REPORT = "report"
MAX_REDUCE_ROUNDS = 6


class AnalysisDriver:
    def __init__(
        self,
        analyses: AnalysisService,
        responses: ResponseService,
        response_store: ResponseStore,
        settings: WorkerSettings,
    ):
        self._analyses = analyses
        self._store = analyses.store
        self._responses = responses
        self._response_store = response_store
        self._settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-a{secrets.token_hex(3)}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self._step():
                    pass
            except Exception as exc:  # the database is away: again at the next poll
                log.error("analysis step failed", extra={"error_type": type(exc).__name__})
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)

    async def _step(self) -> bool:
        """Look at one analysis; False when none needs looking at."""
        row = await self._store.claim(self.worker_id, time.time(), self._settings.lease_s)
        if row is None:
            return False
        if row.status == "queued":
            await self._start(row)
            return True
        current = [job["id"] for job in row.jobs if job["stage"] == row.stage]
        found = await self._response_store.bodies(current)
        if any(status in UNFINISHED for status, _ in found.values()):
            await self._look_later(row)
            return True
        bodies = [found[job_id][1] for job_id in current if job_id in found]
        if row.stage == REPORT:
            await self._finish(row, bodies)
        else:
            await self._reduce(row, bodies)
        return True

    async def _look_later(self, row: DocumentAnalysis) -> None:
        await self._store.update_held(
            row.id, self.worker_id, next_look_at=time.time() + self._settings.poll_s
        )

    async def _start(self, row: DocumentAnalysis) -> None:
        if len(row.chunks) == 1:  # one piece: straight to the report
            await self._next_stage(row, REPORT, [row.chunks[0]], final=True, reduce=False)
        else:
            await self._next_stage(row, "map", row.chunks, final=False, reduce=False)
        log.info("analysis started", extra={"analysis_id": row.id, "chunks": len(row.chunks)})

    async def _reduce(self, row: DocumentAnalysis, bodies: list[dict[str, Any]]) -> None:
        points = [point for body in bodies for point in _key_points(body)]
        if not points:
            await self._fail(row, "The model gave no usable key points for any part.")
            return
        budget = self._analyses.chunk_tokens(row.model)
        groups = _groups(points, budget)
        if len(groups) > 1 and _level(row.stage) >= MAX_REDUCE_ROUNDS:
            groups = groups[:1]  # never in practice: each round shrinks the points ~7 times
        if len(groups) == 1:
            await self._next_stage(row, REPORT, groups, final=True, reduce=False)
            return
        stage = f"reduce-{_level(row.stage) + 1}"
        await self._next_stage(row, stage, groups, final=False, reduce=True)

    async def _next_stage(
        self, row: DocumentAnalysis, stage: str, texts: list[str], *, final: bool, reduce: bool
    ) -> None:
        principal = Principal(**row.principal)
        created: list[dict[str, str]] = []
        # A meter of the analysis's caller, so that each job's usage record names their key.
        meter = Meter("/v1/responses", f"req_{secrets.token_hex(16)}", background=True)
        meter.owner, meter.key_id = principal.owner, principal.key_id
        with metering(meter):
            for text in texts:
                request = stage_request(
                    model=row.model,
                    analysis_id=row.id,
                    stage=stage,
                    text=text,
                    final=final,
                    reduce=reduce,
                    metadata=row.metadata_,
                )
                queued = await self._responses.enqueue(request, principal.owner, principal)
                created.append({"stage": stage, "id": queued["id"]})
        written = await self._store.update_held(
            row.id,
            self.worker_id,
            next_look_at=time.time() + self._settings.poll_s,
            status="in_progress",
            stage=stage,
            jobs=[*row.jobs, *created],
        )
        if not written:  # cancelled meanwhile: so are these
            await self._analyses.cancel_jobs(principal.owner, [job["id"] for job in created])

    async def _finish(self, row: DocumentAnalysis, bodies: list[dict[str, Any]]) -> None:
        try:
            report = parse(Report, _output_text(bodies[0]) if bodies else "")
        except AnswerRejected as rejected:
            await self._fail(row, f"The report could not be written: {rejected}")
            return
        await self._store.update_held(
            row.id,
            self.worker_id,
            next_look_at=None,
            status="completed",
            report=report.model_dump(),
            finished_at=int(time.time()),
        )
        log.info("analysis completed", extra={"analysis_id": row.id})

    async def _fail(self, row: DocumentAnalysis, message: str) -> None:
        await self._store.update_held(
            row.id,
            self.worker_id,
            next_look_at=None,
            status="failed",
            error=message[:1024],
            finished_at=int(time.time()),
        )
        log.info("analysis failed", extra={"analysis_id": row.id})


def _output_text(body: dict[str, Any]) -> str:
    if body.get("status") != ResponseStatus.COMPLETED:
        return ""
    return "".join(
        part.get("text") or ""
        for item in body.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def _key_points(body: dict[str, Any]) -> list[str]:
    try:
        return list(parse(KeyPoints, _output_text(body)).key_points)
    except AnswerRejected:
        return []


def _groups(points: list[str], budget: int) -> list[str]:
    """The points as bullet lists, in order, each within `budget` tokens."""
    groups: list[list[str]] = [[]]
    used = 0
    for point in points:
        cost = estimate_tokens(len(point)) + 2
        if groups[-1] and used + cost > budget:
            groups.append([])
            used = 0
        groups[-1].append(f"- {point}")
        used += cost
    return ["\n".join(group) for group in groups]


def _level(stage: str | None) -> int:
    if stage and stage.startswith("reduce-"):
        return int(stage.removeprefix("reduce-"))
    return 0
