"""Where rate-limit counts live: this process's memory, or Redis shared by every process.

Both stores do the same thing in one atomic step per admission: drop expired buckets, check
every limit of every subject, and — only if all pass — charge them all. The Redis store does
it in one Lua script (one round trip); the memory store is its twin in Python. Keep the two
in step: the tests run every behaviour against both.

A window (a minute, a day) is kept as buckets (WINDOWS: 1 s, 60 s), each holding the requests
and tokens charged in it, plus running totals. A bucket stays counted until
`(index + buckets_per_window + 1) * bucket_s`, so a charge counts for at least the whole window
and at most one bucket longer: no span of the window's length ever holds more than the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# (name, length in seconds, bucket width in seconds). The Lua script repeats these numbers.
WINDOWS: tuple[tuple[str, int, int], ...] = (("m", 60, 1), ("d", 86_400, 60))
# A subject idle this long (its windows long empty) is forgotten, stats included.
SUBJECT_TTL_S = 2 * 86_400
NEVER = -1.0  # retry_at of a request larger than a limit: no wait will admit it


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One subject's limits; None is unlimited."""

    rpm: int | None = None  # requests per minute
    rpd: int | None = None  # requests per day
    tpm: int | None = None  # tokens per minute
    tpd: int | None = None  # tokens per day
    burst: int | None = None  # requests at once; refilled at rpm/60 (or burst/60) per second

    def __post_init__(self) -> None:
        for name, value in zip(LIMIT_FIELDS, self.ordered(), strict=True):
            if value is not None and value < 0:
                raise ValueError(f"rate limit {name} must be >= 0 or None, not {value}")

    def as_args(self) -> list[int]:
        return [-1 if value is None else value for value in self.ordered()]

    def ordered(self) -> tuple[int | None, ...]:
        return (self.rpm, self.rpd, self.tpm, self.tpd, self.burst)


LIMIT_FIELDS = ("rpm", "rpd", "tpm", "tpd", "burst")  # the order of RateLimits.ordered()


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """What one window of one subject holds after an attempt."""

    requests: int
    tokens: int
    resets_at: float  # when its newest charge leaves the window (now, if it is empty)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer of one atomic check-and-charge."""

    admitted: bool  # every limit passed (and, unless peeking, was charged)
    refused_subject: str | None  # which subject's limit said no (the one freeing last)
    refused_limit: str | None  # one of LIMIT_FIELDS
    retry_at: float | None  # when that limit would admit this request; NEVER if no time will
    usage: dict[str, tuple[WindowUsage, WindowUsage]]  # per subject: (minute, day)
    charged_at: float | None  # the time the charge was booked, for settling it later


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call into a store."""

    checks: Mapping[str, RateLimits]
    tokens: int
    now: float
    take: bool = True  # False: only look (and count the rejection if asked)
    count_rejection: bool = False  # this is the request's last chance: count it if refused
    waited_ms: float | None = None  # set for a request that waited in the queue


@dataclass(slots=True)
class SubjectCounts:
    """Stats of one subject as the store keeps them."""

    subject: str
    requests_last_minute: int
    requests_last_day: int
    tokens_last_minute: int
    tokens_last_day: int
    rejected: int
    queued: int
    wait_ms_total: float


class RateLimitStore(Protocol):
    async def attempt(self, attempt: Attempt) -> Outcome: ...

    async def settle(self, subjects: list[str], charged_at: float, delta: int) -> bool:
        """Add delta tokens to the buckets charged at charged_at; True once done."""
        ...

    async def counts(self, subjects: list[str] | None, now: float) -> list[SubjectCounts]: ...


def bucket_index(now: float, bucket_s: int) -> int:
    return math.floor(now / bucket_s)


def bucket_expiry(index: int, length: int, bucket_s: int) -> float:
    return float((index + length // bucket_s + 1) * bucket_s)


def frees_later(candidate: float, current: float) -> bool:
    """Is `candidate` a later retry time than `current`? NEVER is the latest of all."""
    return current != NEVER and (candidate == NEVER or candidate > current)


def burst_rate(limits: RateLimits) -> float:
    """Burst tokens per second: rpm's pace, or burst per minute without an rpm."""
    per_minute = limits.rpm if limits.rpm is not None else limits.burst
    return (per_minute or 0) / 60


# --------------------------------------------------------------------------------------------
# In memory


@dataclass(slots=True)
class _Window:
    length: int
    bucket_s: int
    buckets: dict[int, list[int]] = field(default_factory=dict)  # index -> [requests, tokens]
    requests: int = 0
    tokens: int = 0

    def prune(self, now: float) -> None:
        cutoff = bucket_index(now, self.bucket_s) - self.length // self.bucket_s
        while self.buckets:
            oldest = next(iter(self.buckets))  # dict order is time order (see charge)
            if oldest >= cutoff:
                break
            requests, tokens = self.buckets.pop(oldest)
            self.requests -= requests
            self.tokens -= tokens

    def free_at(self, kind: int, used: int, limit: int, need: int) -> float:
        """When enough old charges leave for `need` more to fit (kind 0 requests, 1 tokens)."""
        if need > limit:
            return NEVER
        for index, amounts in self.buckets.items():
            used -= amounts[kind]
            if used + need <= limit:
                return bucket_expiry(index, self.length, self.bucket_s)
        return 0.0

    def charge(self, now: float, tokens: int) -> None:
        # The newest bucket, if the clock stepped back: dict order must stay time order.
        index = max(bucket_index(now, self.bucket_s), self._newest(default=-1))
        bucket = self.buckets.setdefault(index, [0, 0])
        bucket[0] += 1
        bucket[1] += tokens
        self.requests += 1
        self.tokens += tokens

    def usage(self, now: float) -> WindowUsage:
        newest = self._newest(default=None)
        resets_at = now if newest is None else bucket_expiry(newest, self.length, self.bucket_s)
        return WindowUsage(self.requests, self.tokens, resets_at)

    def _newest(self, default: int | None) -> int | None:
        return next(reversed(self.buckets), default)


@dataclass(slots=True)
class _Subject:
    windows: tuple[_Window, _Window]
    burst_level: float | None = None
    burst_at: float = 0.0
    rejected: int = 0
    queued: int = 0
    wait_ms_total: float = 0.0
    last_seen: float | None = None  # last charged or refused (a look alone does not count)

    def burst_now(self, limits: RateLimits, now: float) -> float:
        assert limits.burst is not None
        if self.burst_level is None:
            return float(limits.burst)
        refill = max(0.0, now - self.burst_at) * burst_rate(limits)
        return min(float(limits.burst), self.burst_level + refill)


def _new_subject() -> _Subject:
    minute, day = (_Window(length, bucket_s) for _, length, bucket_s in WINDOWS)
    return _Subject((minute, day))


class MemoryRateLimitStore:
    """Counts in this process only: for a single-process deployment and the tests."""

    def __init__(self) -> None:
        self._subjects: dict[str, _Subject] = {}

    async def attempt(self, attempt: Attempt) -> Outcome:
        now = attempt.now
        states = {name: self._subjects.setdefault(name, _new_subject()) for name in attempt.checks}
        refused: tuple[str, str] | None = None
        retry_at = 0.0
        for name, limits in attempt.checks.items():
            state = states[name]
            for window in state.windows:
                window.prune(now)
            for limit_name, free_at in _refusals(state, limits, attempt.tokens, now):
                if refused is None or frees_later(free_at, retry_at):
                    refused, retry_at = (name, limit_name), free_at
        admitted = refused is None
        if admitted and attempt.take:
            for name, limits in attempt.checks.items():
                _charge(states[name], limits, attempt, now)
        elif attempt.count_rejection or (not admitted and retry_at == NEVER):
            for state in states.values():
                state.rejected += 1
                state.last_seen = now
                _count_wait(state, attempt.waited_ms)
        usage = {name: _usage(state, now) for name, state in states.items()}
        return Outcome(
            admitted=admitted,
            refused_subject=refused[0] if refused else None,
            refused_limit=refused[1] if refused else None,
            retry_at=None if admitted else retry_at,
            usage=usage,
            charged_at=now if admitted and attempt.take else None,
        )

    async def settle(self, subjects: list[str], charged_at: float, delta: int) -> bool:
        for name in subjects:
            state = self._subjects.get(name)
            if state is None:
                continue
            for window in state.windows:
                bucket = window.buckets.get(bucket_index(charged_at, window.bucket_s))
                if bucket is not None:
                    settled = max(0, bucket[1] + delta)
                    window.tokens += settled - bucket[1]
                    bucket[1] = settled
        return True

    async def counts(self, subjects: list[str] | None, now: float) -> list[SubjectCounts]:
        if subjects is None:
            self._forget_idle(now)
            names = sorted(name for name, state in self._subjects.items() if state.last_seen)
        else:
            names = subjects
        found = []
        for name in names:
            state = self._subjects.get(name, _new_subject())
            minute, day = state.windows
            minute.prune(now)
            day.prune(now)
            found.append(
                SubjectCounts(
                    name,
                    minute.requests,
                    day.requests,
                    minute.tokens,
                    day.tokens,
                    state.rejected,
                    state.queued,
                    state.wait_ms_total,
                )
            )
        return found

    def _forget_idle(self, now: float) -> None:
        """Drop subjects idle for SUBJECT_TTL_S, as their keys expire in Redis."""
        idle = [
            name
            for name, state in self._subjects.items()
            if state.last_seen is None or state.last_seen < now - SUBJECT_TTL_S
        ]
        for name in idle:
            del self._subjects[name]


def _refusals(
    state: _Subject, limits: RateLimits, tokens: int, now: float
) -> list[tuple[str, float]]:
    """Each limit of one subject that this request would break, with when it would fit."""
    minute, day = state.windows
    refusals = []
    for limit_name, window, kind, need in (
        ("rpm", minute, 0, 1),
        ("rpd", day, 0, 1),
        ("tpm", minute, 1, tokens),
        ("tpd", day, 1, tokens),
    ):
        limit = getattr(limits, limit_name)
        used = window.tokens if kind else window.requests
        if limit is not None and used + need > limit:
            refusals.append((limit_name, window.free_at(kind, used, limit, need)))
    if limits.burst is not None:
        level = state.burst_now(limits, now)
        if level + 1e-9 < 1:
            rate = burst_rate(limits)
            refusals.append(("burst", now + (1 - level) / rate if rate > 0 else NEVER))
    return refusals


def _charge(state: _Subject, limits: RateLimits, attempt: Attempt, now: float) -> None:
    for window in state.windows:
        window.charge(now, attempt.tokens)
    if limits.burst is not None:
        state.burst_level = state.burst_now(limits, now) - 1
        state.burst_at = now
    state.last_seen = now
    _count_wait(state, attempt.waited_ms)


def _count_wait(state: _Subject, waited_ms: float | None) -> None:
    if waited_ms is not None:
        state.queued += 1
        state.wait_ms_total += waited_ms


def _usage(state: _Subject, now: float) -> tuple[WindowUsage, WindowUsage]:
    minute, day = state.windows
    return minute.usage(now), day.usage(now)
