"""The status of a stored response, which is also the state of its background job: the
values of the `status` column and of the body's `status` field, as OpenAI names them."""

from __future__ import annotations

from enum import StrEnum


class ResponseStatus(StrEnum):
    QUEUED = "queued"  # a background job waiting for a worker
    IN_PROGRESS = "in_progress"  # running (a background job: under a worker's lease)
    COMPLETED = "completed"  # ended with its whole output
    INCOMPLETE = "incomplete"  # ended with part of its output (max_output_tokens reached)
    FAILED = "failed"  # ended by an error, or a background job out of attempts
    CANCELLED = "cancelled"  # a background job its owner cancelled before it ended


# A job not yet ended: it may still be claimed, cancelled or streamed.
UNFINISHED = (ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS)
