"""A circuit breaker per upstream: after `failures` consecutive failed requests the circuit
opens and requests fail at once (a fallback takes them); after `reset_s` one probe goes
through (half-open); its success closes the circuit, its failure opens it again.

Kept in this process. Written here rather than taken from pybreaker, whose calls and Redis
state are synchronous: this one is awaited on the event loop and never blocks it.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, name: str, failures: int, reset_s: float):
        self.name = name
        self._threshold = failures
        self._reset_s = reset_s
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or time.monotonic() - self._opened_at >= self._reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a request go through now? In half-open state, one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            log.info("circuit half-open: probing", extra={"upstream": self.name})
            return True
        return False

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("circuit closed", extra={"upstream": self.name})
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or (self._opened_at is None and self._failures >= self._threshold):
            log.warning("circuit open", extra={"upstream": self.name, "failures": self._failures})
            self._opened_at = time.monotonic()
        self._probing = False
