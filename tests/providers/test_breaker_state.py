"""The circuit breaker's state as the metrics read it: closed, open, half-open, closed again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from aiservice.providers.breaker import CircuitBreaker


async def test_a_circuit_goes_from_closed_to_open_to_half_open_and_back():
    breaker = CircuitBreaker("http://upstream.test/v1#model", failures=2, reset_s=0.2)
    assert await breaker.state() == "closed"
    await breaker.failed()
    assert await breaker.state() == "closed"  # one failure is below the threshold
    await breaker.failed()
    assert await breaker.state() == "open"
    assert not await breaker.allow()
    deadline = time.monotonic() + 5
    while await breaker.state() == "open":
        assert time.monotonic() < deadline, "the circuit never became half-open"
        await asyncio.sleep(0.02)
    assert await breaker.state() == "half-open"
    assert await breaker.allow()  # the probe
    await breaker.succeeded()
    assert await breaker.state() == "closed"


# -- shared through Redis ---------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def shared_pair(**first: float) -> AsyncIterator[tuple[CircuitBreaker, CircuitBreaker]]:
    """Two breakers on one circuit in Redis, as two processes would hold them; the circuit's
    keys are deleted afterwards."""
    redis = Redis.from_url(REDIS_URL)
    name = f"http://upstream.test/v1#{uuid.uuid4().hex}"
    try:
        yield (
            CircuitBreaker(name, failures=2, reset_s=30, redis=redis, **first),
            CircuitBreaker(name, failures=2, reset_s=30, redis=redis, shared_read_s=0),
        )
    finally:
        await redis.delete(f"aiservice:breaker:{name}", f"aiservice:breaker:{name}:probe")
        await redis.aclose()


async def test_a_circuit_opened_in_redis_by_one_breaker_is_open_for_the_other():
    async with shared_pair(shared_read_s=0) as (first, second):
        assert await first.allow()
        await second.failed()
        await second.failed()
        assert not await first.allow()
        assert await first.state() == "open"


async def test_a_clean_closed_circuit_is_not_read_again_within_shared_read_s():
    async with shared_pair(shared_read_s=3600) as (first, second):
        assert await first.allow()  # read: closed, nothing counted
        await second.failed()
        await second.failed()  # open in Redis
        assert await first.allow()  # within the window: trusted without a read
        assert not await second.allow()
        # A failure of its own makes the first read again: it sees the open circuit.
        await first.failed()
        assert not await first.allow()


async def test_after_shared_read_s_the_other_breakers_open_circuit_is_seen():
    async with shared_pair(shared_read_s=0.05) as (first, second):
        assert await first.allow()
        await second.failed()
        await second.failed()
        deadline = time.monotonic() + 5
        while await first.allow():
            assert time.monotonic() < deadline, "the open circuit was never seen"
            await asyncio.sleep(0.01)
        assert await first.state() == "open"
