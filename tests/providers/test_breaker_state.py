"""The circuit breaker's state as the metrics read it: closed, open, half-open, closed again."""

from __future__ import annotations

import asyncio
import time

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
