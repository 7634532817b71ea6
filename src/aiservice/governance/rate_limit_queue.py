"""The queue of requests waiting for rate-limit capacity, in this process.

Waiters are served high before medium before low, first come first served within a priority.
A waiter is only tried when no waiter ahead of it that shares one of its subjects is still
waiting, so a low-priority request never takes capacity a higher-priority one is waiting for,
while requests for unrelated subjects do not wait behind each other.

The queue is tried again when the earliest refused waiter's limit says capacity will be back
(the window slides, the burst bucket refills), when a settle in this process gives tokens back,
and when a waiter arrives or leaves. Each process has its own queue; the counts the waiters
compete for are the store's, shared through Redis. Capacity freed by another process's settle
is seen at the next of those moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiservice.governance.rate_limit_store import NEVER, Outcome, RateLimits


class Clock(Protocol):
    """Wall time (shared with other processes through Redis) and a way to wait on it."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(eq=False, slots=True)
class Waiter:
    """One request waiting in the queue."""

    checks: Mapping[str, RateLimits]  # the request: its subjects and their limits
    tokens: int  # its estimated tokens
    rank: int  # 0 is served first
    seq: int  # arrival order within a rank
    enqueued_at: float
    last_refusal: Outcome | None = None
    admitted: asyncio.Future[Outcome] = field(  # its final outcome, set by a pass
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def subjects(self) -> frozenset[str]:
        return frozenset(self.checks)


class WaitQueue:
    """Holds the waiters and tries them, in order, against the store."""

    def __init__(self, clock: Clock, attempt: Callable[[Waiter], Awaitable[Outcome]]) -> None:
        self._clock = clock
        self._attempt = attempt
        self._waiters: list[Waiter] = []  # sorted by (rank, seq)
        self._order = itertools.count()
        self._lock = asyncio.Lock()
        self._again = False  # something changed while a pass was running
        self._pass: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None

    def next_seq(self) -> int:
        return next(self._order)

    def waiting(self, subject: str) -> int:
        return sum(subject in waiter.subjects for waiter in self._waiters)

    def ahead_of(self, subjects: frozenset[str], rank: int) -> Waiter | None:
        """The first waiter a new request of this rank must not overtake, if any."""
        for waiter in self._waiters:
            if waiter.rank <= rank and waiter.subjects & subjects:
                return waiter
        return None

    async def wait(self, waiter: Waiter, give_up_at: float) -> Outcome | None:
        """The outcome that settled the waiter's fate (admitted, or refused for good because
        it can never fit), or None when give_up_at came first."""
        self._waiters.append(waiter)
        self._waiters.sort(key=lambda queued: (queued.rank, queued.seq))
        self.wake()
        deadline = asyncio.ensure_future(self._sleep_until(give_up_at))
        try:
            await asyncio.wait({waiter.admitted, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            if not waiter.admitted.done():
                # Under the lock, so a pass cannot admit (and charge) it as it leaves.
                async with self._lock:
                    self._leave(waiter)
        return waiter.admitted.result() if not waiter.admitted.cancelled() else None

    def wake(self) -> None:
        """Try the waiters again soon (coalesced with a pass already running)."""
        if not self._waiters:
            return
        self._again = True
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._run_passes())

    def _leave(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            waiter.admitted.cancel()
            self.wake()  # it may have been holding others back

    async def _run_passes(self) -> None:
        async with self._lock:
            while self._again:
                self._again = False
                await self._try_waiters()
            self._set_timer()

    async def _try_waiters(self) -> None:
        held: set[str] = set()  # subjects a waiter ahead is still waiting for
        for waiter in list(self._waiters):
            if waiter.subjects & held:
                held |= waiter.subjects
                continue
            try:
                outcome = await self._attempt(waiter)
            except Exception as exc:  # the waiter's own call reports it
                self._waiters.remove(waiter)
                waiter.admitted.set_exception(exc)
                continue
            if outcome.admitted or outcome.retry_at == NEVER:
                self._waiters.remove(waiter)
                waiter.admitted.set_result(outcome)
            else:
                waiter.last_refusal = outcome
                held |= waiter.subjects

    def _set_timer(self) -> None:
        """Wake when the earliest refusal said capacity would be back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        retry_times = [
            waiter.last_refusal.retry_at
            for waiter in self._waiters
            if waiter.last_refusal is not None
            and waiter.last_refusal.retry_at is not None
            and waiter.last_refusal.retry_at != NEVER
        ]
        if retry_times:
            self._timer = asyncio.create_task(self._wake_at(min(retry_times)))

    async def _wake_at(self, at: float) -> None:
        await self._sleep_until(at)
        self.wake()

    async def _sleep_until(self, at: float) -> None:
        # The time left is read when the task runs, not when it was made: time may pass between.
        await self._clock.sleep(max(0.0, at - self._clock.time()))

    async def close(self) -> None:
        """Stop the timer and any pass (waiters still waiting run out their max_wait_s)."""
        for task in (self._timer, self._pass):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
