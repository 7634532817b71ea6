"""The Batch API: create, retrieve, list and cancel batches, each scoped to its owner.

Creating a batch checks what can be checked at once (the endpoint, the input file) and
queues it `validating`; the workers (services/batch_worker.py) check every line, run them and
write the output files.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import Any

from openai.types import Batch

from aiservice.errors import InvalidRequest, NotFound
from aiservice.governance.accounts import Principal
from aiservice.observability.logging import request_id_var
from aiservice.services.batch_endpoints import ENDPOINTS
from aiservice.services.batch_request import BatchPage, CreateBatchRequest, window_seconds
from aiservice.services.files import FileService
from aiservice.services.zero_retention import refuse_storage
from aiservice.store.batch_status import BatchStatus
from aiservice.store.batches import BatchStore, LineCounts, NewBatch, UnknownBatchCursor
from aiservice.store.tables import StoredBatch

# Their request counts and usage are read from the lines while these last.
_LIVE = (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING)


class BatchService:
    """Batches of every owner on one database."""

    def __init__(self, store: BatchStore, files: FileService):
        self.store = store
        self._files = files
        self.on_enqueued: Callable[[], None] | None = None  # wakes this process's worker

    async def create(self, request: CreateBatchRequest, principal: Principal) -> dict[str, Any]:
        refuse_storage(principal, "Batches")  # their lines and output files are stored
        if request.endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"Batches are served for {', '.join(ENDPOINTS)}; not for {request.endpoint}.",
                param="endpoint",
                code="unsupported_endpoint",
            )
        source = await self._files.row(principal.owner, request.input_file_id)
        if source.purpose != "batch":
            raise InvalidRequest(
                f"The file {source.id} was uploaded with purpose '{source.purpose}': a batch "
                "input file needs purpose 'batch'.",
                param="input_file_id",
            )
        now = int(time.time())
        row = await self.store.insert(
            NewBatch(
                id=f"batch_{secrets.token_hex(16)}",
                owner=principal.owner,
                key_id=principal.key_id,
                principal=dataclasses.asdict(principal),
                endpoint=request.endpoint,
                input_file_id=source.id,
                completion_window=request.completion_window,
                created_at=now,
                expires_at=now + window_seconds(request.completion_window),
                metadata=request.metadata,
                output_expires_after=(
                    request.output_expires_after.model_dump()
                    if request.output_expires_after
                    else None
                ),
                request_id=request_id_var.get(),
            )
        )
        if self.on_enqueued is not None:
            self.on_enqueued()
        return await self.batch_object(row)

    async def retrieve(self, owner: str, batch_id: str) -> dict[str, Any]:
        return await self.batch_object(await self._row(owner, batch_id))

    async def list(self, owner: str, page: BatchPage) -> dict[str, Any]:
        try:
            rows, has_more = await self.store.list(owner, page.limit, page.after)
        except UnknownBatchCursor:
            raise InvalidRequest(f"No such batch: {page.after}", param="after") from None
        data = [await self.batch_object(row) for row in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    async def cancel(self, owner: str, batch_id: str) -> dict[str, Any]:
        row = await self.store.cancel(owner, batch_id, int(time.time()))
        if row is None:
            raise NotFound(f"No such batch: {batch_id}", param="batch_id")
        if row.status != BatchStatus.CANCELLING and row.status not in (BatchStatus.CANCELLED,):
            raise InvalidRequest(
                f"The batch {batch_id} is {row.status}: it can no longer be cancelled.",
                param="batch_id",
                code="batch_not_cancellable",
            )
        if self.on_enqueued is not None:
            self.on_enqueued()
        return await self.batch_object(row)

    async def _row(self, owner: str, batch_id: str) -> StoredBatch:
        row = await self.store.get(owner, batch_id)
        if row is None:
            raise NotFound(f"No such batch: {batch_id}", param="batch_id")
        return row

    async def batch_object(self, row: StoredBatch) -> dict[str, Any]:
        """The row as OpenAI's Batch object; counts read from its lines while it runs."""
        counts = None
        if row.status in _LIVE and row.upstream is None:
            counts = await self.store.counts(row.seq)
        return batch_object(row, counts)


def batch_object(row: StoredBatch, counts: LineCounts | None = None) -> dict[str, Any]:
    request_counts = row.request_counts
    usage = row.usage
    if counts is not None:
        request_counts = {
            "total": counts.total,
            "completed": counts.succeeded,
            "failed": counts.failed,
        }
        usage = usage_object(counts)
    batch = Batch(
        id=row.id,
        object="batch",
        endpoint=row.endpoint,
        model=row.model,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=row.status,  # type: ignore[arg-type]
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        errors={"object": "list", "data": row.errors} if row.errors else None,
        request_counts=request_counts or {"total": 0, "completed": 0, "failed": 0},
        usage=usage,
        metadata=row.metadata_,
        **row.times,
    )
    # Unset fields are left out, not null: the spec types them as strings and integers.
    return batch.model_dump(mode="json", exclude_none=True)


def usage_object(counts: LineCounts) -> dict[str, Any]:
    return {
        "input_tokens": counts.input_tokens,
        "input_tokens_details": {"cached_tokens": counts.cached_tokens},
        "output_tokens": counts.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts.input_tokens + counts.output_tokens,
    }
