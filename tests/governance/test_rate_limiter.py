"""The rate limiter against both stores: this process's memory and a real Redis (127.0.0.1:6379).

Time is a fake clock the tests move by hand, so windows slide, buckets refill and waiters time
out exactly when the test says, without sleeping. Each Redis test uses its own key prefix and
deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from aiservice.governance.rate_limits import (
    OUTAGE_PAUSE_S,
    Admission,
    RateLimiter,
    RateLimitExceeded,
    RateLimits,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
# A minute boundary (and a whole bucket of the day window), so window arithmetic is round.
START = 1_700_000_040.0


class FakeClock:
    """Time that moves only when the test calls advance(); sleepers wake as it passes them."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, woken)
        self._sleepers.append(entry)
        try:
            await woken
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for wake_at, woken in self._sleepers:
            if wake_at <= self.now and not woken.done():
                woken.set_result(None)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def limiters(
    backend: str, clock: FakeClock, count: int = 1
) -> AsyncIterator[list[RateLimiter]]:
    """`count` limiters sharing one store: for Redis, each on its own connection (a process)."""
    if backend == "memory":
        assert count == 1, "the memory store is one process's"
        made = [RateLimiter(clock=clock)]
        try:
            yield made
        finally:
            await made[0].close()
        return
    prefix = f"aiservice:test:rl:{uuid.uuid4().hex}:"
    clients = [Redis.from_url(REDIS_URL) for _ in range(count)]
    made = [RateLimiter(client, prefix=prefix, clock=clock) for client in clients]
    try:
        yield made
    finally:
        for limiter in made:
            await limiter.close()
        keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
        if keys:
            await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


@asynccontextmanager
async def one_limiter(backend: str, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    async with limiters(backend, clock) as (limiter,):
        yield limiter


async def admitted_count(limiter: RateLimiter, checks: dict[str, RateLimits], n: int) -> int:
    """Send n requests one after another; how many were admitted."""
    results = [await try_admit(limiter, checks) for _ in range(n)]
    return sum(isinstance(result, Admission) for result in results)


async def try_admit(
    limiter: RateLimiter, checks: dict[str, RateLimits], tokens: int = 0
) -> Admission | RateLimitExceeded:
    try:
        return await limiter.admit(checks, tokens)
    except RateLimitExceeded as refused:
        return refused


async def refusal(
    limiter: RateLimiter, checks: dict[str, RateLimits], tokens: int = 0
) -> RateLimitExceeded:
    with pytest.raises(RateLimitExceeded) as refused:
        await limiter.admit(checks, tokens)
    return refused.value


# --- windows ------------------------------------------------------------------------------


async def test_a_concurrent_burst_of_twice_rpm_admits_exactly_rpm(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=25)}
    async with one_limiter(backend, clock) as limiter:
        results = await asyncio.gather(
            *(limiter.admit(checks, 10) for _ in range(50)), return_exceptions=True
        )
        admitted = [result for result in results if isinstance(result, Admission)]
        refused = [result for result in results if isinstance(result, RateLimitExceeded)]
        assert (len(admitted), len(refused)) == (25, 25)
        assert {refusal.limit for refusal in refused} == {"requests per minute"}


async def test_two_processes_sharing_redis_admit_exactly_rpm_between_them(clock) -> None:
    checks = {"key:a": RateLimits(rpm=30), "user:u": RateLimits(tpm=10_000)}
    async with limiters("redis", clock, count=2) as (first, second):
        results = await asyncio.gather(
            *(limiter.admit(checks, 5) for _ in range(30) for limiter in (first, second)),
            return_exceptions=True,
        )
        assert sum(isinstance(result, Admission) for result in results) == 30
        assert sum(isinstance(result, RateLimitExceeded) for result in results) == 30
        (stats,) = await second.stats(["key:a"])
        assert (stats.requests_last_minute, stats.rejected, stats.tokens_last_minute) == (
            30,
            30,
            150,
        )


# Run by each process of the two-process test: a concurrent burst, then print how many passed.
BURST_IN_A_PROCESS = """
import asyncio, sys
from redis.asyncio import Redis
from aiservice.governance.rate_limits import Admission, RateLimiter, RateLimits

async def burst(prefix, n):
    redis = Redis.from_url(sys.argv[3])
    limiter = RateLimiter(redis, prefix=prefix)
    checks = {"key:a": RateLimits(rpm=40)}
    results = await asyncio.gather(
        *(limiter.admit(checks, 1) for _ in range(n)), return_exceptions=True
    )
    print(sum(isinstance(result, Admission) for result in results))
    await redis.aclose()

asyncio.run(burst(sys.argv[1], int(sys.argv[2])))
"""


async def test_two_real_processes_sharing_redis_admit_exactly_rpm_between_them() -> None:
    prefix = f"aiservice:test:rl:{uuid.uuid4().hex}:"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BURST_IN_A_PROCESS,
            prefix,
            "40",
            REDIS_URL,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        outputs = [await process.communicate() for process in processes]
        assert [process.returncode for process in processes] == [0, 0]
        assert sum(int(stdout) for stdout, _ in outputs) == 40
    finally:
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_the_minute_window_slides_after_sixty_to_sixty_one_seconds(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=3)}
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, checks, 3) == 3
        clock.advance(30)
        refused = await refusal(limiter, checks)
        # Charges in the bucket [START, START+1) count until START + 61.
        assert refused.retry_after_s == pytest.approx(31)
        clock.advance(30.5)
        await refusal(limiter, checks)
        clock.advance(0.5)
        assert await admitted_count(limiter, checks, 4) == 3


async def test_rpd_holds_across_minutes_and_frees_after_a_day(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=100, rpd=5)}
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, checks, 3) == 3
        clock.advance(3600)
        assert await admitted_count(limiter, checks, 3) == 2
        refused = await refusal(limiter, checks)
        assert refused.limit == "requests per day"
        # The day's bucket of the first three (a minute wide) leaves the window 24 h 1 min on.
        assert refused.retry_after_s == pytest.approx(86_460 - 3600)
        clock.advance(86_460 - 3600)
        assert await admitted_count(limiter, checks, 4) == 3


# --- tokens -------------------------------------------------------------------------------


async def test_tpm_counts_the_estimate_then_the_settled_usage(backend, clock) -> None:
    checks = {"key:a": RateLimits(tpm=1000)}
    async with one_limiter(backend, clock) as limiter:
        first = await limiter.admit(checks, 600)
        refused = await refusal(limiter, checks, 600)
        assert (refused.limit, refused.error_type) == ("tokens per minute", "tokens")
        await first.settle(300)  # an over-estimate: 300 tokens come back
        second = await limiter.admit(checks, 600)
        assert second.headers["x-ratelimit-remaining-tokens"] == "100"
        await second.settle(800)  # an under-estimate: the window now holds more than the limit
        over = await refusal(limiter, checks, 1)
        assert over.headers["x-ratelimit-remaining-tokens"] == "0"
        (stats,) = await limiter.stats(["key:a"])
        assert stats.tokens_last_minute == 1100
        clock.advance(61)
        await limiter.admit(checks, 1000)


async def test_tpd_counts_settled_usage_over_the_day(backend, clock) -> None:
    checks = {"user:u": RateLimits(tpm=10_000, tpd=2000)}
    async with one_limiter(backend, clock) as limiter:
        first = await limiter.admit(checks, 1500)
        await first.settle(2500)  # more than the day allows: nothing else today
        clock.advance(120)
        refused = await refusal(limiter, checks, 1)
        assert refused.limit == "tokens per day"
        assert refused.retry_after_s == pytest.approx(86_460 - 120)
        await first.settle(400)  # settling again corrects to the new figure
        await limiter.admit(checks, 1600)
        await refusal(limiter, checks, 1)
        (stats,) = await limiter.stats(["user:u"])
        assert (stats.tokens_last_minute, stats.tokens_last_day) == (1600, 2000)


async def test_a_request_larger_than_a_token_limit_is_refused_without_retry_after(
    backend, clock
) -> None:
    checks = {"key:a": RateLimits(tpm=1000)}
    async with one_limiter(backend, clock) as limiter:
        with pytest.raises(RateLimitExceeded) as refused:
            await limiter.admit(checks, 1001, max_wait_s=30)
        assert refused.value.retry_after_s is None
        assert "retry-after" not in refused.value.headers
        assert "Request too large" in refused.value.message
        (stats,) = await limiter.stats(["key:a"])
        assert (stats.requests_last_minute, stats.rejected) == (0, 1)


async def test_a_request_too_large_is_refused_at_once_even_behind_waiters(backend, clock) -> None:
    checks = {"key:a": RateLimits(tpm=100)}
    async with one_limiter(backend, clock) as limiter:
        await limiter.admit(checks, 100)
        waiter = asyncio.create_task(limiter.admit(checks, 50, max_wait_s=600))
        await until(lambda: limiter.waiting("key:a") == 1)
        with pytest.raises(RateLimitExceeded) as refused:
            await limiter.admit(checks, 500, max_wait_s=600)
        assert (refused.value.limit, refused.value.retry_after_s) == ("tokens per minute", None)
        clock.advance(61)
        await asyncio.wait_for(waiter, timeout=5)
        (stats,) = await limiter.stats(["key:a"])
        assert (stats.rejected, stats.queued) == (1, 1)


# --- atomicity ----------------------------------------------------------------------------


async def test_a_request_refused_by_tpm_takes_no_rpm_slot(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=5, tpm=100)}
    async with one_limiter(backend, clock) as limiter:
        await limiter.admit(checks, 80)
        for _ in range(10):
            await refusal(limiter, checks, 50)
        assert await admitted_count(limiter, checks, 5) == 4


async def test_a_request_refused_by_its_user_charges_nothing_to_its_key(backend, clock) -> None:
    key, user = "key:a", "user:u"
    checks = {key: RateLimits(rpm=10, tpd=1000), user: RateLimits(rpm=2)}
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, checks, 5) == 2
        key_stats, user_stats = await limiter.stats([key, user])
        assert (key_stats.requests_last_minute, key_stats.rejected) == (2, 3)
        assert (user_stats.requests_last_minute, user_stats.rejected) == (2, 3)
        # The key alone still has its 8 other requests.
        assert await admitted_count(limiter, {key: checks[key]}, 9) == 8


# --- burst --------------------------------------------------------------------------------


async def test_burst_admits_that_many_at_once_then_one_per_rpm_interval(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=60, burst=3)}
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, checks, 5) == 3
        refused = await refusal(limiter, checks)
        assert (refused.limit, refused.retry_after_s) == ("burst", pytest.approx(1.0))
        clock.advance(1)
        assert await admitted_count(limiter, checks, 3) == 1
        clock.advance(10)  # refills to the burst, not beyond
        assert await admitted_count(limiter, checks, 5) == 3


async def test_burst_without_rpm_refills_at_burst_per_minute(backend, clock) -> None:
    checks = {"key:a": RateLimits(burst=2)}
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, checks, 4) == 2
        assert (await refusal(limiter, checks)).retry_after_s == pytest.approx(30)
        clock.advance(30)
        assert await admitted_count(limiter, checks, 2) == 1


async def test_without_burst_the_whole_rpm_goes_at_once(backend, clock) -> None:
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, {"key:a": RateLimits(rpm=40)}, 50) == 40


# --- the queue ----------------------------------------------------------------------------


async def test_waiters_are_admitted_high_before_medium_before_low_in_arrival_order(
    backend, clock
) -> None:
    checks = {"key:a": RateLimits(rpm=1)}
    arrivals = ["low-1", "medium-1", "high-1", "low-2", "high-2", "medium-2"]
    async with one_limiter(backend, clock) as limiter:
        await limiter.admit(checks, 0)
        waiting = {}
        for name in arrivals:
            priority = name.split("-")[0]
            waiting[name] = asyncio.create_task(
                limiter.admit(checks, 0, priority=priority, max_wait_s=3600)
            )
            await asyncio.sleep(0)  # let it arrive before the next one
        await until(lambda: limiter.waiting("key:a") == 6)
        admitted_order = []
        pending = set(waiting.values())
        for _ in arrivals:
            clock.advance(61)  # one more request fits
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1
            (task,) = done
            admitted_order.append(next(name for name, t in waiting.items() if t is task))
            assert isinstance(task.result(), Admission)
        assert admitted_order == ["high-1", "high-2", "medium-1", "medium-2", "low-1", "low-2"]


async def test_a_waiter_is_refused_when_max_wait_runs_out(backend, clock) -> None:
    checks = {"key:a": RateLimits(rpm=1)}
    async with one_limiter(backend, clock) as limiter:
        await limiter.admit(checks, 0)
        impatient = asyncio.create_task(limiter.admit(checks, 0, max_wait_s=5))
        patient = asyncio.create_task(limiter.admit(checks, 0, max_wait_s=100))
        await until(lambda: limiter.waiting("key:a") == 2)
        clock.advance(5)
        with pytest.raises(RateLimitExceeded) as refused:
            await impatient
        assert refused.value.limit == "requests per minute"
        assert refused.value.retry_after_s == pytest.approx(56)
        assert not patient.done()
        clock.advance(56)
        admission = await patient
        assert admission.waited_s == pytest.approx(61)
        (stats,) = await limiter.stats(["key:a"])
        assert (stats.requests_last_minute, stats.rejected, stats.queued) == (1, 1, 2)
        assert stats.average_wait_ms == pytest.approx((5_000 + 61_000) / 2)


async def test_tokens_given_back_by_a_settle_admit_a_waiter_at_once(backend, clock) -> None:
    checks = {"key:a": RateLimits(tpm=100)}
    async with one_limiter(backend, clock) as limiter:
        running = await limiter.admit(checks, 100)
        waiter = asyncio.create_task(limiter.admit(checks, 50, max_wait_s=30))
        await until(lambda: limiter.waiting("key:a") == 1)
        await running.settle(40)
        admission = await asyncio.wait_for(waiter, timeout=5)
        assert admission.headers["x-ratelimit-remaining-tokens"] == "10"
        assert admission.waited_s == 0


async def test_a_request_does_not_overtake_a_waiter_of_the_same_priority(backend, clock) -> None:
    checks = {"key:a": RateLimits(tpm=100)}
    async with one_limiter(backend, clock) as limiter:
        running = await limiter.admit(checks, 100)
        waiter = asyncio.create_task(limiter.admit(checks, 100, max_wait_s=600))
        await until(lambda: limiter.waiting("key:a") == 1)
        await running.settle(50)  # 50 free: not enough for the waiter, enough for 10
        refused = await refusal(limiter, checks, 10)
        assert (refused.limit, refused.retry_after_s) == ("queue", 1.0)
        assert refused.headers["x-ratelimit-remaining-tokens"] == "50"
        # A higher priority goes first; another subject does not wait behind key:a.
        await limiter.admit(checks, 10, priority="high")
        await limiter.admit({"key:b": RateLimits(tpm=100)}, 10)
        assert not waiter.done()
        clock.advance(61)
        await asyncio.wait_for(waiter, timeout=5)
        (stats,) = await limiter.stats(["key:a"])
        assert (stats.rejected, stats.queued, stats.tokens_last_minute) == (1, 1, 100)


# --- answers ------------------------------------------------------------------------------


async def test_admissions_and_refusals_carry_the_six_headers_of_the_tightest_limits(
    backend, clock
) -> None:
    checks = {
        "key:a": RateLimits(rpm=2, tpm=1000),
        "user:u": RateLimits(rpd=10, tpd=1500),
    }
    async with one_limiter(backend, clock) as limiter:
        first = await limiter.admit(checks, 600)
        assert first.headers == {
            "x-ratelimit-limit-requests": "2",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "1m1s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "400",
            "x-ratelimit-reset-tokens": "1m1s",
        }
        clock.advance(0.5)
        second = await limiter.admit(checks, 100)
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        assert second.headers["x-ratelimit-reset-requests"] == "1m0.5s"
        clock.advance(61)
        third = await limiter.admit(checks, 700)
        # Now the day's tokens are the tighter: 1500 - 1400.
        assert third.headers["x-ratelimit-limit-tokens"] == "1500"
        assert third.headers["x-ratelimit-remaining-tokens"] == "100"
        # The day's newest bucket, [START+60, START+120), leaves at START+60+86,460.
        assert third.headers["x-ratelimit-reset-tokens"] == "24h0m58.5s"
        clock.advance(0.25)
        await limiter.admit(checks, 0)
        refused = await refusal(limiter, checks)
        assert refused.status_code == 429
        assert refused.envelope()["error"]["code"] == "rate_limit_exceeded"
        assert refused.envelope()["error"]["type"] == "requests"
        assert "requests per minute" in refused.message
        assert refused.retry_after_s == pytest.approx(60.25)
        assert refused.headers["retry-after"] == "61"
        assert refused.headers["retry-after-ms"] == "60250"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert {name for name in refused.headers if name.startswith("x-ratelimit-")} == {
            f"x-ratelimit-{what}-{kind}"
            for what in ("limit", "remaining", "reset")
            for kind in ("requests", "tokens")
        }


async def test_a_kind_without_limits_gets_no_headers(backend, clock) -> None:
    async with one_limiter(backend, clock) as limiter:
        admission = await limiter.admit({"key:a": RateLimits(rpm=5)}, 10)
        assert set(admission.headers) == {
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        }


async def test_stats_count_what_was_sent(backend, clock) -> None:
    limits = RateLimits(rpm=3)
    async with one_limiter(backend, clock) as limiter:
        assert await admitted_count(limiter, {"key:a": limits, "user:u": RateLimits()}, 5) == 3
        clock.advance(120)
        assert await admitted_count(limiter, {"key:a": limits}, 1) == 1
        assert await admitted_count(limiter, {"key:b": limits}, 2) == 2
        by_subject = {stats.subject: stats for stats in await limiter.stats()}
        assert set(by_subject) == {"key:a", "key:b", "user:u"}
        key_a = by_subject["key:a"]
        assert (key_a.requests_last_minute, key_a.requests_last_day, key_a.rejected) == (1, 4, 2)
        assert (key_a.queued, key_a.average_wait_ms, key_a.waiting_now) == (0, None, 0)
        user = by_subject["user:u"]
        assert (user.requests_last_minute, user.requests_last_day, user.rejected) == (0, 3, 2)
        assert by_subject["key:b"].requests_last_day == 2


async def test_batched_settle_ups_are_summed_into_one_store_call_per_second_charged(
    backend, clock
) -> None:
    limits = RateLimits(tpm=1000)
    async with one_limiter(backend, clock) as limiter:
        limiter._settle_batch_s = 3600  # held until close() sends them: nothing timed
        calls: list[int] = []
        send = limiter._store.settle

        async def counted(subjects, charged_at, delta):
            calls.append(delta)
            return await send(subjects, charged_at, delta)

        limiter._store.settle = counted  # type: ignore[method-assign]
        admissions = [await limiter.admit({"key:a": limits}, 100) for _ in range(3)]
        for admission in admissions:
            await admission.settle(10)
        (held,) = await limiter.stats(["key:a"])
        assert held.tokens_last_minute == 300 and calls == []  # nothing sent yet
        await limiter.close()
        assert calls == [-270]  # one call for the three
        (settled,) = await limiter.stats(["key:a"])
        assert settled.tokens_last_minute == 30


# --- Redis outages --------------------------------------------------------------------------


async def test_an_unreachable_redis_lets_requests_through_and_says_so(clock, caplog) -> None:
    # Nothing listens on port 1: the connection is refused (and redis-py retries with backoff).
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    limiter = RateLimiter(unreachable, clock=clock)
    checks = {"key:a": RateLimits(rpm=1)}
    try:
        with caplog.at_level(logging.WARNING, logger="aiservice.governance.rate_limits"):
            for _ in range(3):
                admission = await limiter.admit(checks, 10)
                assert admission.headers == {}
                await admission.settle(5)
            # One warning: after the first failure Redis is left alone for a while ...
            assert caplog.text.count("rate limit state unavailable") == 1
            clock.advance(OUTAGE_PAUSE_S)
            # ... and then asked again.
            await limiter.admit(checks, 10)
            assert caplog.text.count("rate limit state unavailable") == 2
        assert await limiter.stats() == []
    finally:
        await unreachable.aclose()


# --- helpers ------------------------------------------------------------------------------


async def until(condition, timeout_s: float = 5.0) -> None:
    """Let the event loop run (Redis answers take real time) until condition() holds."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + timeout_s
    while not condition():
        assert loop.time() < give_up_at, "condition not reached"
        await asyncio.sleep(0.001)
