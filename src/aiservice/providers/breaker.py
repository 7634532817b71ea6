"""A circuit breaker per upstream: after `failures` consecutive failed attempts the circuit
opens and requests fail at once (a fallback takes them); after `reset_s` one probe goes
through (half-open); its success closes the circuit, its failure opens it again.

The state lives in this process, or in Redis (`REDIS_URL`) so that every process behind the
same upstream sees the same circuit: one opened by a process is open for all (within
`SHARED_READ_S`, below), and one probe goes through for all of them. Written here rather
than taken from pybreaker, whose calls and Redis state are synchronous: this one is awaited
on the event loop and never blocks it. If Redis cannot be reached the breaker lets requests
through (fail open) and says so in the log.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


# With Redis, a closed circuit with no failure counted, as last read, is trusted for this long
# before Redis is asked again: at a thousand requests a second that is ten reads instead of a
# thousand (the read was ~8 % of a keyed request's CPU). A circuit another process opens is
# seen here at most this late; anything but "closed and clean" is read again every time.
SHARED_READ_S = 0.1


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures: int,
        reset_s: float,
        redis: Redis | None = None,
        *,
        shared_read_s: float = SHARED_READ_S,
    ):
        self.name = name
        self._threshold = failures
        self._reset_s = reset_s
        self._redis = redis
        self._key = f"aiservice:breaker:{name}"
        # In-process state (without Redis).
        self._failures = 0
        self._opened_at: float | None = None
        # Whether this process holds the one half-open probe, and since when (in-process).
        self._probing = False
        self._probe_at: float | None = None
        # With Redis: whether the last read of the shared state found anything to reset. A
        # success then costs no write when the circuit is closed with no failure counted (the
        # usual case: one round trip per request instead of two).
        self._shared_dirty = True
        self._shared_read_s = shared_read_s
        self._clean_read_at = -float("inf")  # monotonic time of the last clean read

    async def allow(self) -> bool:
        """May a request go through now? When half-open, one probe at a time."""
        opened_at = await self._opened()
        if opened_at is None:
            return True
        if time.time() - opened_at < self._reset_s:
            return False
        if self._redis is None:
            # A probe that never reported back (its client left) expires like Redis's key.
            acquired = self._probe_at is None or time.time() - self._probe_at >= self._reset_s
            if acquired:
                self._probe_at = time.time()
        else:
            try:
                acquired = bool(
                    await self._redis.set(
                        f"{self._key}:probe", "1", nx=True, px=int(self._reset_s * 1000)
                    )
                )
            except RedisError as exc:
                return _fail_open(exc)
        if acquired:
            self._probing = True
            log.info("circuit half-open: probing", extra={"upstream": self.name})
        return acquired

    async def succeeded(self) -> None:
        was_open = self._probing or self._opened_at is not None
        dirty = self._shared_dirty or self._probing
        self._failures, self._opened_at, self._probing, self._probe_at = 0, None, False, None
        if self._redis is not None and dirty:
            try:
                await self._redis.delete(self._key, f"{self._key}:probe")
            except RedisError as exc:
                _fail_open(exc)
        if was_open:
            log.info("circuit closed", extra={"upstream": self.name})

    async def failed(self) -> None:
        probing, self._probing, self._probe_at = self._probing, False, None
        if self._redis is None:
            self._failures += 1
            if probing or (self._opened_at is None and self._failures >= self._threshold):
                self._opened_at = time.time()
                self._log_open(self._failures)
            return
        self._shared_dirty = True
        try:
            if probing:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self._key, "opened_at", time.time())
                    pipe.delete(f"{self._key}:probe")
                    await pipe.execute()
                self._log_open(None)
                return
            failures = await self._redis.hincrby(self._key, "failures", 1)
            if failures >= self._threshold and await self._redis.hsetnx(
                self._key, "opened_at", time.time()
            ):
                self._log_open(failures)
        except RedisError as exc:
            _fail_open(exc)

    async def state(self) -> str:
        """The circuit's state: closed, open, or half-open (open long enough to probe)."""
        opened_at = await self._opened()
        if opened_at is None:
            return "closed"
        return "open" if time.time() - opened_at < self._reset_s else "half-open"

    async def _opened(self) -> float | None:
        if self._redis is None:
            return self._opened_at
        now = time.monotonic()
        if not self._shared_dirty and now - self._clean_read_at < self._shared_read_s:
            return None  # closed and clean a moment ago
        try:
            state = await self._redis.hgetall(self._key)
        except RedisError as exc:
            _fail_open(exc)
            self._shared_dirty = True
            return None
        self._shared_dirty = bool(state)  # failures counted, or opened
        if not state:
            self._clean_read_at = now
        value = state.get(b"opened_at")
        return float(value) if value is not None else None

    def _log_open(self, failures: int | None) -> None:
        log.warning("circuit open", extra={"upstream": self.name, "failures": failures})


def _fail_open(exc: RedisError) -> bool:
    log.warning("circuit breaker state unavailable", extra={"error_type": type(exc).__name__})
    return True
