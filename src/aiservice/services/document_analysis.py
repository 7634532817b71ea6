"""Document analysis (seed 002's exercise 2): a long document split into pieces that fit the
model, each piece mapped to its key points by a background response, the points reduced (in
rounds while they do not fit one request) into a report under a JSON schema.

This module creates, follows and cancels analyses; the stages are started by the workers
(services/analysis_driver.py), so an analysis goes on across restarts like any background
response. Its cost is the sum of its jobs' usage records (`metadata.analysis_id`): the same
figure `/v1/usage` reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiservice.errors import InvalidRequest, NotFound
from aiservice.governance.accounts import Principal
from aiservice.providers.registry import ModelRegistry
from aiservice.services.analysis_prompts import (
    FEATURE,
    MAP_OUTPUT_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
)
from aiservice.services.pii_store import redacted_texts_to_store
from aiservice.services.responses import ResponseService
from aiservice.services.zero_retention import refuse_storage
from aiservice.settings import ModelConfig
from aiservice.store.analyses import AnalysisStore, NewAnalysis
from aiservice.store.response_status import UNFINISHED
from aiservice.store.responses import ResponseStore
from aiservice.store.tables import DocumentAnalysis
from aiservice.store.usage import UsageQuery, UsageStore

if TYPE_CHECKING:
    from aiservice.documents import Document

# A piece of the document is at most this many tokens (a smaller model context cuts it
# further): more, smaller pieces run in parallel and keep each job short.
DEFAULT_CHUNK_TOKENS = 3000
MIN_CHUNK_TOKENS = 256
MAX_CHUNKS = 2000
_LOCAL_CONTEXT = 8192  # SmolLM2's training context, when no context_window is configured
_UPSTREAM_CONTEXT = 32768  # an upstream's, assumed when not configured


class AnalysisService:
    def __init__(
        self,
        store: AnalysisStore,
        responses: ResponseService,
        response_store: ResponseStore,
        usage: UsageStore,
        registry: ModelRegistry,
        models: list[ModelConfig],
    ):
        self.store = store
        self._responses = responses
        self._response_store = response_store
        self._usage = usage
        self._registry = registry
        self._models = {model.name: model for model in models}
        self.on_enqueued: Callable[[], None] | None = None  # wakes this process's driver

    def chunk_tokens(self, model: str, asked: int | None = None) -> int:
        """How large a piece may be for `model`: what its context holds after the prompt and
        the answer, and at most `asked` (or the default)."""
        served = self._registry.resolve(model)
        config = self._models.get(served.served_by)
        window = config.context_window if config and config.context_window else None
        if window is None:
            window = (
                _LOCAL_CONTEXT
                if config is None or config.provider == "local"
                else (_UPSTREAM_CONTEXT)
            )
        room = window - PROMPT_OVERHEAD_TOKENS - MAP_OUTPUT_TOKENS
        return max(MIN_CHUNK_TOKENS, min(asked or DEFAULT_CHUNK_TOKENS, room))

    async def create(
        self,
        document: Document,
        model: str,
        principal: Principal,
        *,
        metadata: dict[str, str] | None = None,
        chunk_tokens: int | None = None,
    ) -> dict[str, Any]:
        from aiservice.documents import split_into_chunks

        # The document, its stages' responses and the report are all stored.
        refuse_storage(principal, "Document analyses")
        size = self.chunk_tokens(model, chunk_tokens)
        chunks = await asyncio.to_thread(split_into_chunks, document.text, size)
        if not chunks:
            raise InvalidRequest(f"{document.name}: the document holds no text.", param="file")
        if len(chunks) > MAX_CHUNKS:
            raise InvalidRequest(
                f"{document.name}: the document is too long ({len(chunks)} pieces of {size} "
                f"tokens; at most {MAX_CHUNKS}).",
                param="file",
            )
        row = await self.store.insert(
            NewAnalysis(
                id=f"analysis_{secrets.token_hex(12)}",
                owner=principal.owner,
                principal=dataclasses.asdict(principal),
                model=model,
                name=document.name,
                created_at=int(time.time()),
                chunks=await redacted_texts_to_store(
                    self._responses.guard, principal, [chunk.text for chunk in chunks]
                ),
                metadata={**(metadata or {}), "feature": FEATURE},
            )
        )
        if self.on_enqueued is not None:
            self.on_enqueued()
        return await self.analysis_object(row)

    async def retrieve(self, owner: str, analysis_id: str) -> dict[str, Any]:
        return await self.analysis_object(await self._row(owner, analysis_id))

    async def cancel(self, owner: str, analysis_id: str) -> dict[str, Any]:
        """Cancel the analysis and every one of its jobs still to finish."""
        row = await self.store.cancel(owner, analysis_id, int(time.time()))
        if row is None:
            raise NotFound(f"No such analysis: {analysis_id}", param="analysis_id")
        await self.cancel_jobs(owner, [job["id"] for job in row.jobs])
        return await self.analysis_object(row)

    async def cancel_jobs(self, owner: str, job_ids: list[str]) -> None:
        found = await self._response_store.bodies(job_ids)
        for job_id, (status, _) in found.items():
            if status in UNFINISHED:
                await self._responses.cancel(owner, job_id)

    async def _row(self, owner: str, analysis_id: str) -> DocumentAnalysis:
        row = await self.store.get(owner, analysis_id)
        if row is None:
            raise NotFound(f"No such analysis: {analysis_id}", param="analysis_id")
        return row

    async def analysis_object(self, row: DocumentAnalysis) -> dict[str, Any]:
        """The analysis as the API answers it: progress from its jobs, cost from the ledger."""
        found = await self._response_store.bodies([job["id"] for job in row.jobs])
        done = sum(1 for status, _ in found.values() if status not in UNFINISHED)
        total = len(row.jobs) + (0 if row.stage == "report" else 1)
        if row.status == "queued":  # one piece goes straight to the report
            total = 1 if len(row.chunks) == 1 else len(row.chunks) + 1
        usage = await self.usage_of(row)
        return {
            "object": "document.analysis",
            "id": row.id,
            "status": row.status,
            "model": row.model,
            "name": row.name,
            "stage": row.stage,
            "progress": {
                # Jobs that ended; a completed analysis has done them all.
                "done": total if row.status == "completed" else done,
                "total": total,
                "chunks": len(row.chunks),
                "tokens": usage["total_tokens"],
                "cost": usage["cost"],
            },
            "report": row.report,
            "usage": usage,
            "cost": usage["cost"],
            "error": row.error,
            "metadata": row.metadata_ or {},
            "created_at": row.created_at,
            "finished_at": row.finished_at,
        }

    async def usage_of(self, row: DocumentAnalysis) -> dict[str, Any]:
        """Tokens and cost of the analysis's jobs, in all and by stage, from the ledger."""
        rows = await self._usage.totals(
            UsageQuery(
                since=float(row.created_at),
                owner=row.owner,
                group_by=("metadata.stage",),
                metadata=(("analysis_id", row.id),),
            )
        )
        stages = {
            str(group["metadata.stage"]): {
                "requests": group["requests"],
                "input_tokens": group["input_tokens"],
                "output_tokens": group["output_tokens"],
                "cost": round(group["cost_usd"], 10),
            }
            for group in rows
        }
        input_tokens = sum(stage["input_tokens"] for stage in stages.values())
        output_tokens = sum(stage["output_tokens"] for stage in stages.values())
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "cost": round(sum(stage["cost"] for stage in stages.values()), 10),
            "stages": stages,
        }
