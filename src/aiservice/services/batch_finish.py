"""A batch's end: its output and error files written from its lines, then its final status.

The files get ids derived from the batch's, so that a worker that dies while writing them
leaves nothing behind once the next one is done: it drops what the first wrote, and writes
them again. Lines still open when a batch is cancelled or expires are closed first, as error
lines that never ran (`batch_cancelled`, `batch_expired`); a worker still on one of them can
then no longer answer it, nor charge it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiservice.services.batch_line_run import not_run_line
from aiservice.services.batches import usage_object
from aiservice.services.files import BATCH_FILE_TTL_S, FileService
from aiservice.store.batch_status import BatchStatus, LineState
from aiservice.store.batches import BatchStore
from aiservice.store.files import CHUNK_BYTES
from aiservice.store.tables import StoredBatch

_PAGE = 1000  # lines read per query while writing a file

_NOT_RUN = {
    BatchStatus.CANCELLED: (
        "batch_cancelled",
        "This request was not run: the batch was cancelled first.",
    ),
    BatchStatus.EXPIRED: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}
_ENDED_AT = {
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.CANCELLED: "cancelled_at",
    BatchStatus.EXPIRED: "expired_at",
}


def end_of(row: StoredBatch, now: float) -> BatchStatus:
    """The final status a claimed batch is heading for."""
    if row.status == BatchStatus.CANCELLING:
        return BatchStatus.CANCELLED
    if row.status == BatchStatus.IN_PROGRESS and row.expires_at <= now:
        return BatchStatus.EXPIRED
    return BatchStatus.COMPLETED


class BatchFinisher:
    def __init__(self, store: BatchStore, files: FileService):
        self._store = store
        self._files = files

    async def finish(self, row: StoredBatch, worker_id: str, end: BatchStatus) -> bool:
        """Close the batch `end`; False if it was no longer this worker's."""
        now = int(time.time())
        times = dict(row.times)
        if end in _NOT_RUN:
            code, message = _NOT_RUN[end]
            await self._store.close_open_lines(
                row.seq, lambda custom_id: not_run_line(custom_id, code, message)
            )
        if end == BatchStatus.COMPLETED and "finalizing_at" not in times:
            times["finalizing_at"] = now
            if not await self._store.keep_held(
                row.id, worker_id, status=BatchStatus.FINALIZING, times=times
            ):
                return False
        counts = await self._store.counts(row.seq)
        output_id, error_id = _file_ids(row.id)
        await self._files.delete_ids([output_id, error_id])  # an earlier try's, if any
        expires_at = now + (
            row.output_expires_after["seconds"] if row.output_expires_after else BATCH_FILE_TTL_S
        )
        written: dict[str, str | None] = {"output": None, "error": None}
        for kind, state, file_id, total in (
            ("output", LineState.SUCCEEDED, output_id, counts.succeeded),
            ("error", LineState.FAILED, error_id, counts.failed),
        ):
            if total:
                await self._files.write(
                    row.owner,
                    "batch_output",
                    f"{row.id}_{kind}.jsonl",
                    self._jsonl(row.seq, state),
                    expires_at,
                    file_id,
                )
                written[kind] = file_id
        times[_ENDED_AT[end]] = int(time.time())
        ended = await self._store.update_held(
            row.id,
            worker_id,
            status=end,
            times=times,
            output_file_id=written["output"],
            error_file_id=written["error"],
            request_counts={
                "total": counts.total,
                "completed": counts.succeeded,
                "failed": counts.failed,
            },
            usage=usage_object(counts),
        )
        return ended is not None

    async def fail(self, row: StoredBatch, worker_id: str, errors: list[dict[str, Any]]) -> bool:
        """The input was refused: the batch fails with every fault, nothing having run."""
        times = {**row.times, "failed_at": int(time.time())}
        ended = await self._store.update_held(
            row.id,
            worker_id,
            status=BatchStatus.FAILED,
            times=times,
            errors=errors,
            request_counts={"total": 0, "completed": 0, "failed": 0},
        )
        return ended is not None

    async def _jsonl(self, batch_seq: int, state: LineState) -> AsyncIterator[bytes]:
        """The lines in `state`, in input order, as JSON Lines in chunks of about 1 MiB."""
        after, pending, size = 0, [], 0
        while page := await self._store.results(batch_seq, state, after, _PAGE):
            for line, result in page:
                encoded = json.dumps(result, separators=(",", ":")).encode() + b"\n"
                pending.append(encoded)
                size += len(encoded)
                after = line
                if size >= CHUNK_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
        if pending:
            yield b"".join(pending)


def _file_ids(batch_id: str) -> tuple[str, str]:
    digest = hashlib.sha256(batch_id.encode()).hexdigest()
    return f"file-{digest[:24]}", f"file-{digest[24:48]}"
