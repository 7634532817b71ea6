"""Rate limits per subject ("key:<id>", "user:<id>"): requests and tokens per minute and per day,
a burst allowance, priorities, OpenAI's x-ratelimit-* headers, counted in this process or in
Redis shared by every process.

Semantics:
- Each subject has `RateLimits`: rpm, rpd (requests per minute/day), tpm, tpd (tokens per
  minute/day), burst; None is unlimited. A request names every subject it counts against (its
  key and its user) and is admitted only if every limit of every subject passes; then all are
  charged at once. A refused request charges nothing (all or nothing, one atomic step).
- Windows slide: each is kept as buckets (1 s for a minute, 60 s for a day) and a charge counts
  for at least the whole window and at most one bucket more (60-61 s, 24 h-24 h 1 min). So no
  60 s (24 h) span ever admits more than the limit: of a concurrent burst of 2 x rpm requests,
  exactly rpm are admitted, on one process or on several sharing Redis.
- Tokens are charged up front (the caller's estimate: prompt tokens + max_tokens) and settled
  with `Admission.settle(actual_tokens)`, which corrects the charge up or down in the buckets it
  was made in (a bucket already out of its window is left alone). A request estimated above a
  token limit can never fit: it is refused at once, with no Retry-After.
- burst: a token bucket of `burst` requests, refilled at rpm/60 per second (at burst/60 per
  second when there is no rpm, so burst alone means "burst at once, burst a minute"). Without
  burst, the whole rpm may be used at once.
- Priorities high > medium > low. With max_wait_s > 0 a refused request waits in this
  process's priority queue (rate_limit_queue.py) until a limit admits it or max_wait_s runs out;
  a request never overtakes a waiting request of the same or higher priority that shares one of
  its subjects (if it may not wait, it is refused).
- A refusal raises RateLimitExceeded (429, code rate_limit_exceeded, type "requests" or
  "tokens") naming the limit that admits the request last, with retry_after_s until then,
  Retry-After (whole seconds, at least 1) and retry-after-ms.
- Headers: x-ratelimit-{limit,remaining,reset}-{requests,tokens}, for the request limit (rpm,
  rpd) and the token limit (tpm, tpd) with the fewest remaining across the subjects (ties: the
  later reset). "reset" is when that window is empty again, as OpenAI's durations ("1s",
  "6m0s", "20ms"). A kind with no limit gets no headers; burst is never in them.
- Stats per subject: requests and tokens in the last minute and day (same buckets, so up to one
  bucket long), rejected and queued requests (a queued one waited, admitted or not) and their
  average wait, kept as long as the subject has been seen in the last two days.
- Time is the wall clock (time.time()): processes sharing Redis need synchronised clocks (NTP);
  a process whose clock is off by s seconds sees the windows shifted by s.
- If Redis fails (or takes over STORE_TIMEOUT_S), requests are admitted unchecked (fail open)
  with a warning in the log, like the circuit breakers: an outage of the limiter's store must
  not become an outage of the service. Redis is then left alone for OUTAGE_PAUSE_S, so the
  outage costs one request a timeout rather than every request redis-py's retries.

Why not the `limits` package (5.8, used by login_throttle.py): its strategies take one limit at a
time, so "refused by tpm, so no rpm slot taken" would need a check-then-hit race across limits
and processes, and a hit cannot be corrected afterwards (no negative cost for the settle). So
the windows are our own: one Lua script (rate_limit_redis.py) and its in-memory twin
(rate_limit_store.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aiservice.errors import AIServiceError
from aiservice.governance.rate_limit_headers import (
    LIMIT_NAMES,
    headers_for,
    queue_message,
    refusal_message,
)
from aiservice.governance.rate_limit_queue import Clock, Waiter, WaitQueue
from aiservice.governance.rate_limit_redis import RedisRateLimitStore
from aiservice.governance.rate_limit_store import (
    NEVER,
    Attempt,
    MemoryRateLimitStore,
    Outcome,
    RateLimits,
    RateLimitStore,
)

__all__ = [
    "Admission",
    "Priority",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimits",
    "SubjectStats",
    "SystemClock",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
# A store call that takes longer counts as failed (Redis answers in well under a millisecond;
# redis-py's own retries and backoff on a dead server take seconds).
STORE_TIMEOUT_S = 0.5
# After a failure, requests go unchecked for this long without asking Redis again, so an outage
# costs one request a timeout, not every request.
OUTAGE_PAUSE_S = 5.0


class Priority(StrEnum):
    HIGH = "high"  # served first
    MEDIUM = "medium"  # the default
    LOW = "low"  # waits behind the others

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class SystemClock:
    """Wall-clock time: the one clock that processes sharing Redis agree on."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimitExceeded(AIServiceError):
    """A rate limit refused the request (429)."""

    status_code = 429
    default_code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        subject: str,
        limit: str,
        retry_after_s: float | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(message)
        self.subject = subject
        # "requests per minute", "requests per day", "tokens per minute", "tokens per day",
        # "burst", or "queue" (capacity is there, but waiting requests must be served first).
        self.limit = limit
        self.error_type = "tokens" if limit.startswith("tokens") else "requests"
        self.retry_after_s = retry_after_s  # None: the request can never fit this limit
        self.headers = dict(headers)
        if retry_after_s is not None:
            self.headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
            self.headers["retry-after-ms"] = str(max(1, math.ceil(retry_after_s * 1000)))


@dataclass(frozen=True, slots=True)
class SubjectStats:
    """What one subject did recently."""

    subject: str
    requests_last_minute: int
    requests_last_day: int
    tokens_last_minute: int
    tokens_last_day: int
    rejected: int  # refused requests, whether or not they waited first
    queued: int  # requests that waited in a queue, admitted or not
    average_wait_ms: float | None  # over the queued ones
    waiting_now: int  # in this process's queue at this moment


class Admission:
    """An admitted request: its headers, and the token charge to settle when usage is known."""

    __slots__ = ("_charged_at", "_limiter", "_subjects", "charged_tokens", "headers", "waited_s")

    def __init__(
        self,
        limiter: RateLimiter | None,
        subjects: list[str],
        tokens: int,
        charged_at: float | None,
        headers: dict[str, str],
        waited_s: float,
    ) -> None:
        self._limiter = limiter
        self._subjects = subjects
        self._charged_at = charged_at
        self.charged_tokens = tokens
        self.headers = headers
        self.waited_s = waited_s

    async def settle(self, actual_tokens: int) -> None:
        """Correct the token charge to what the request really used (may be called again)."""
        delta = actual_tokens - self.charged_tokens
        if delta == 0 or self._limiter is None or self._charged_at is None:
            return
        self.charged_tokens = actual_tokens
        await self._limiter._settle(self._subjects, self._charged_at, delta)


class RateLimiter:
    """Admits or refuses requests against the limits of their subjects."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = "aiservice:rl:",
        clock: Clock | None = None,
        settle_batch_s: float = 0.0,
    ) -> None:
        self._store: RateLimitStore = (
            MemoryRateLimitStore() if redis is None else RedisRateLimitStore(redis, prefix)
        )
        self._clock: Clock = clock or SystemClock()
        self._queue: WaitQueue | None = None  # made on first use: it needs the running loop
        self._store_down_until = 0.0  # while the clock is before this, the store is not asked
        # With settle_batch_s > 0, settle-ups are summed per (subjects, second charged) and
        # sent together that much later: one store call for many requests instead of one each
        # (on Redis a round trip each, which the next request waited behind). Buckets are whole
        # seconds wide or more, so the second charged keeps each in its bucket.
        self._settle_batch_s = settle_batch_s
        self._unsettled: dict[tuple[tuple[str, ...], int], int] = {}
        self._settling: asyncio.Task[None] | None = None

    async def admit(
        self,
        checks: Mapping[str, RateLimits],
        tokens: int,
        priority: Priority | str = Priority.MEDIUM,
        max_wait_s: float = 0.0,
    ) -> Admission:
        """Charge one request and `tokens` to every subject, or raise RateLimitExceeded."""
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        if not checks:
            return Admission(None, [], tokens, None, {}, 0.0)
        queue = self._wait_queue()
        rank = Priority(priority).rank
        seq = queue.next_seq()
        started = self._clock.time()
        subjects = frozenset(checks)
        ahead = queue.ahead_of(subjects, rank)
        outcome: Outcome | None = None
        # A request that can never fit takes no one's capacity: its refusal need not queue.
        if ahead is None or _never_fits(checks, tokens):
            outcome = await self._try(checks, tokens, count_rejection=max_wait_s <= 0)
            if outcome.admitted:
                return self._admission(checks, tokens, outcome, started)
            if max_wait_s <= 0 or outcome.retry_at == NEVER:
                raise self._refusal(checks, tokens, outcome)
        elif max_wait_s <= 0:
            raise await self._refusal_behind(checks, tokens, ahead, waited_ms=None)
        waiter = Waiter(checks, tokens, rank, seq, started, last_refusal=outcome)
        final = await queue.wait(waiter, give_up_at=started + max_wait_s)
        if final is not None and final.admitted:
            return self._admission(checks, tokens, final, started)
        if final is not None:  # it can never fit (counted as rejected by the store)
            raise self._refusal(checks, tokens, final)
        waited_ms = (self._clock.time() - started) * 1000
        raise await self._refusal_behind(checks, tokens, queue.ahead_of(subjects, rank), waited_ms)

    async def stats(self, subjects: list[str] | None = None) -> list[SubjectStats]:
        """Per subject (all seen in the last two days when None), sorted as asked or by name."""
        found = await self._ask_store(lambda: self._store.counts(subjects, self._clock.time()))
        return [
            SubjectStats(
                subject=counts.subject,
                requests_last_minute=counts.requests_last_minute,
                requests_last_day=counts.requests_last_day,
                tokens_last_minute=counts.tokens_last_minute,
                tokens_last_day=counts.tokens_last_day,
                rejected=counts.rejected,
                queued=counts.queued,
                average_wait_ms=counts.wait_ms_total / counts.queued if counts.queued else None,
                waiting_now=self.waiting(counts.subject),
            )
            for counts in found or []
        ]

    def waiting(self, subject: str) -> int:
        """Requests for this subject waiting in this process's queue now."""
        return self._queue.waiting(subject) if self._queue is not None else 0

    async def close(self) -> None:
        """Send the settle-ups held for a batch, stop the queue's timers (app lifespan)."""
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        await self._send_settles()
        if self._queue is not None:
            await self._queue.close()

    def _wait_queue(self) -> WaitQueue:
        if self._queue is None:
            self._queue = WaitQueue(self._clock, self._try_waiter)
        return self._queue

    async def _try(
        self,
        checks: Mapping[str, RateLimits],
        tokens: int,
        *,
        take: bool = True,
        count_rejection: bool = False,
        waited_ms: float | None = None,
    ) -> Outcome:
        attempt = Attempt(checks, tokens, self._clock.time(), take, count_rejection, waited_ms)
        outcome = await self._ask_store(lambda: self._store.attempt(attempt))
        return outcome or Outcome(True, None, None, None, {}, None)  # fail open

    async def _try_waiter(self, waiter: Waiter) -> Outcome:
        waited_ms = (self._clock.time() - waiter.enqueued_at) * 1000
        return await self._try(waiter.checks, waiter.tokens, waited_ms=waited_ms)

    async def _settle(self, subjects: list[str], charged_at: float, delta: int) -> None:
        if self._settle_batch_s <= 0:
            await self._settle_now(subjects, charged_at, delta)
            return
        key = (tuple(subjects), math.floor(charged_at))
        self._unsettled[key] = self._unsettled.get(key, 0) + delta
        if self._settling is None:
            self._settling = asyncio.create_task(self._settle_later())

    async def _settle_later(self) -> None:
        await asyncio.sleep(self._settle_batch_s)
        self._settling = None
        await self._send_settles()

    async def _send_settles(self) -> None:
        batch, self._unsettled = self._unsettled, {}
        for (subjects, second), delta in batch.items():
            if delta:
                await self._settle_now(list(subjects), float(second), delta)

    async def _settle_now(self, subjects: list[str], charged_at: float, delta: int) -> None:
        settled = await self._ask_store(lambda: self._store.settle(subjects, charged_at, delta))
        if settled and delta < 0 and self._queue is not None:
            self._queue.wake()  # the tokens given back may admit a waiter

    async def _ask_store(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """The store's answer, or None while it is failing (the caller then fails open)."""
        if self._clock.time() < self._store_down_until:
            return None
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                return await call()
        except (RedisError, TimeoutError) as exc:
            self._store_down_until = self._clock.time() + OUTAGE_PAUSE_S
            log.warning(
                "rate limit state unavailable: admitting requests unchecked",
                extra={"error_type": type(exc).__name__, "retry_in_s": OUTAGE_PAUSE_S},
            )
            return None

    def _admission(
        self, checks: Mapping[str, RateLimits], tokens: int, outcome: Outcome, started: float
    ) -> Admission:
        headers = headers_for(checks, outcome.usage, self._clock.time())
        waited_s = self._clock.time() - started
        return Admission(self, list(checks), tokens, outcome.charged_at, headers, waited_s)

    def _refusal(
        self, checks: Mapping[str, RateLimits], tokens: int, outcome: Outcome
    ) -> RateLimitExceeded:
        now = self._clock.time()
        assert outcome.refused_subject is not None and outcome.refused_limit is not None
        retry_after = None if outcome.retry_at == NEVER else max(0.0, outcome.retry_at - now)
        subject, field = outcome.refused_subject, outcome.refused_limit
        return RateLimitExceeded(
            refusal_message(subject, field, checks[subject], tokens, retry_after),
            subject=subject,
            limit=LIMIT_NAMES[field],
            retry_after_s=retry_after,
            headers=headers_for(checks, outcome.usage, now),
        )

    async def _refusal_behind(
        self,
        checks: Mapping[str, RateLimits],
        tokens: int,
        ahead: Waiter | None,
        waited_ms: float | None,
    ) -> RateLimitExceeded:
        """Refuse a request that leaves without its own final attempt: it ran out of time, or
        may not wait and a waiter it must not overtake is queued. One look (nothing charged)
        counts the rejection and gives fresh headers."""
        outcome = await self._try(
            checks, tokens, take=False, count_rejection=True, waited_ms=waited_ms
        )
        if not outcome.admitted:
            return self._refusal(checks, tokens, outcome)
        # Capacity is there, but a waiter ahead is about to take it.
        shared = sorted(ahead.subjects & frozenset(checks)) if ahead else []
        subject = shared[0] if shared else next(iter(checks))
        return RateLimitExceeded(
            queue_message(subject),
            subject=subject,
            limit="queue",
            retry_after_s=1.0,
            headers=headers_for(checks, outcome.usage, self._clock.time()),
        )


def _never_fits(checks: Mapping[str, RateLimits], tokens: int) -> bool:
    """Is some limit smaller than this one request (so that no wait will admit it)?"""
    return any(
        limit is not None and need > limit
        for limits in checks.values()
        for limit, need in zip(limits.ordered(), (1, 1, tokens, tokens, 1), strict=True)
    )
