"""The fake upstream's record of the requests it received, shared across threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    json: Any  # the parsed JSON body; None when there was none or it was not JSON
    received: float  # time.monotonic() when its body had been read

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Every request to the OpenAI routes, and a count per path; safe to read from any thread.

    With `keep_records=False` only the counts are kept (long benchmarks)."""

    def __init__(self, keep_records: bool = True) -> None:
        self.keep_records = keep_records
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()

    def record(self, method: str, path: str, headers: dict[str, str], json: Any) -> None:
        received = time.monotonic()
        with self._lock:
            self._counts[path] += 1
            if self.keep_records:
                self._records.append(RecordedRequest(method, path, headers, json, received))

    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> int:
        """Forget every request; returns how many were counted."""
        with self._lock:
            total = sum(self._counts.values())
            self._records.clear()
            self._counts.clear()
            return total
