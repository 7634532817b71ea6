"""Faults the fake upstream injects, and the thread-safe queue that hands them out."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The routes a fault without a `path` applies to: those that generate text.
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses"})


class Fault(BaseModel):
    """One failure for the next matching request(s): an error status, a delay before the first
    byte, a stream that stalls, a dropped connection or a body that is not JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Which requests: `path` is "/v1/chat/completions" or "/chat/completions" (the /v1 prefix
    # is added); None means any generation route. `stream` limits it to streamed (True) or
    # non-streamed (False) requests. `times` is how many requests it spoils; None: all of them
    # until cleared.
    path: str | None = None
    stream: bool | None = None
    times: int | None = Field(default=1, ge=1)

    # Answer with this status and OpenAI's error envelope; the envelope's fields default by
    # status (429: type "requests", code "rate_limit_exceeded"; 5xx: "server_error"...).
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)  # seconds: Retry-After, retry-after-ms
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None

    # Wait this long before sending anything, headers included. Combines with any other fault.
    first_byte_delay_s: float | None = Field(default=None, ge=0)

    # Send this many SSE events (a non-streamed answer: its headers), then wait `stall_s`
    # before the rest. Shutting the server down ends the wait by dropping the connection.
    stall_after_chunks: int | None = Field(default=None, ge=0)
    stall_s: float = Field(default=3600.0, ge=0)

    # Close the connection abruptly: before the headers, or after this many SSE events
    # (a non-streamed answer: after its headers, before the body).
    drop_connection: bool = False
    drop_after_chunks: int | None = Field(default=None, ge=0)

    # Status 200 with a body that is not JSON (a stream: a first `data: {not json` event).
    malformed_json: bool = False

    @field_validator("path")
    @classmethod
    def _under_v1(cls, path: str | None) -> str | None:
        if path is None:
            return None
        path = "/" + path.strip("/")
        return path if path.startswith("/v1/") else "/v1" + path

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [
            name
            for name, chosen in (
                ("status", self.status is not None),
                ("stall_after_chunks", self.stall_after_chunks is not None),
                ("drop", self.drop_connection or self.drop_after_chunks is not None),
                ("malformed_json", self.malformed_json),
            )
            if chosen
        ]
        if len(kinds) > 1:
            raise ValueError(f"a fault is one of status, stall, drop, malformed_json: got {kinds}")
        if not kinds and self.first_byte_delay_s is None:
            raise ValueError(
                "a fault needs one of status, first_byte_delay_s, stall_after_chunks, "
                "drop_connection, drop_after_chunks, malformed_json"
            )
        if self.retry_after is not None and self.status is None:
            raise ValueError("retry_after goes with status")
        return self

    def matches(self, path: str, stream: bool) -> bool:
        path_matches = path in GENERATION_PATHS if self.path is None else path == self.path
        return path_matches and (self.stream is None or self.stream == stream)


@dataclass(slots=True)
class PendingFault:
    """A queued fault and how many more requests it will spoil (None: no limit)."""

    fault: Fault
    remaining: int | None


class FaultQueue:
    """Faults in the order they were added; the first that matches a request takes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[PendingFault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(PendingFault(fault, fault.times))

    def clear(self) -> int:
        """Remove every pending fault; returns how many there were."""
        with self._lock:
            count = len(self._pending)
            self._pending.clear()
            return count

    def pending(self) -> list[PendingFault]:
        with self._lock:
            return [PendingFault(p.fault, p.remaining) for p in self._pending]

    def take(self, path: str, stream: bool) -> Fault | None:
        """The fault for this request, counting it as used; None when none applies."""
        if not self._pending:  # the benchmark's path: no lock when nothing is queued
            return None
        with self._lock:
            for position, pending in enumerate(self._pending):
                if not pending.fault.matches(path, stream):
                    continue
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        del self._pending[position]
                return pending.fault
        return None
