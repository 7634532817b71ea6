"""The states of a batch and of its lines, as stored."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    VALIDATING = "validating"  # accepted; a worker reads and checks its input file
    FAILED = "failed"  # the input file was refused: nothing ran
    IN_PROGRESS = "in_progress"  # its lines run on the workers (or upstream)
    FINALIZING = "finalizing"  # every line is done: the output files are being written
    COMPLETED = "completed"  # the output files are written
    EXPIRED = "expired"  # the completion window ended first: partial results
    CANCELLING = "cancelling"  # cancelled; the running lines finish
    CANCELLED = "cancelled"  # cancelled, with the lines done before in the output file


FINAL = frozenset(
    {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)


class LineState(StrEnum):
    PENDING = "pending"  # waits for a worker (or for its rate limit: `not_before`)
    RUNNING = "running"  # a worker holds it under a lease
    SUCCEEDED = "succeeded"  # answered 200: goes to the output file
    FAILED = "failed"  # answered an error, or never ran: goes to the error file


OPEN = (LineState.PENDING, LineState.RUNNING)
