"""Cost of the rate limiter per request: RateLimiter.admit() (and settle()) on both stores.

Each call is one request of a typical gateway check: its key (rpm, rpd, tpm, tpd, burst) and
its user (rpm, tpd), limits high enough that every call is admitted, 500 estimated tokens.
Calls go one after another on one event loop (uvloop, as the server runs, unless --no-uvloop),
each timed with perf_counter_ns; the Redis store talks to --redis-url (a fresh key prefix,
deleted afterwards).

Rows:
  memory admit   the in-process store
  redis admit    one Lua script (EVALSHA) round trip; target p50 < 500 us
  redis settle   correcting the token charge afterwards (not on the request's path)

--rounds rounds of --calls calls each, after a warm-up; the table gives the median over rounds
of each round's p50 and p99, in microseconds. Exit status 1 if the Redis admit p50 misses its
target.

    .venv/bin/python benchmarks/rate_limiter.py --rounds 5 --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from aiservice.governance.rate_limits import RateLimiter, RateLimits

CHECKS = {
    "key:bench": RateLimits(rpm=10**9, rpd=10**9, tpm=10**12, tpd=10**12, burst=10**9),
    "user:bench": RateLimits(rpm=10**9, tpd=10**12),
}
TOKENS = 500
REDIS_ADMIT_P50_TARGET_US = 500


async def timed_calls(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    """Microseconds per call."""
    durations = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        await call()
        durations.append((time.perf_counter_ns() - started) / 1000)
    return durations


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(limiter: RateLimiter, rounds: int, calls: int) -> dict[str, list[list[float]]]:
    admissions = []

    async def admit() -> None:
        admissions.append(await limiter.admit(CHECKS, TOKENS))

    async def settle() -> None:
        await admissions.pop().settle(TOKENS - 100)

    await timed_calls(admit, calls // 4)  # warm-up: script loaded, connections open
    admissions.clear()
    rounds_of = {"admit": [], "settle": []}
    for _ in range(rounds):
        rounds_of["admit"].append(await timed_calls(admit, calls))
        rounds_of["settle"].append(await timed_calls(settle, calls))
    return rounds_of


async def run(args: argparse.Namespace) -> int:
    rows: list[tuple[str, list[list[float]]]] = []
    memory = await measure(RateLimiter(), args.rounds, args.calls)
    rows.append(("memory admit", memory["admit"]))
    redis = Redis.from_url(args.redis_url)
    prefix = f"aiservice:bench:rl:{uuid.uuid4().hex}:"
    try:
        shared = await measure(RateLimiter(redis, prefix=prefix), args.rounds, args.calls)
        rows += [("redis admit", shared["admit"]), ("redis settle", shared["settle"])]
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    print(f"{args.rounds} rounds x {args.calls} calls, median over rounds (microseconds)")
    print(f"{'row':<14} {'p50':>8} {'p99':>8}")
    medians = {}
    for name, rounds in rows:
        p50 = statistics.median(percentile(durations, 0.50) for durations in rounds)
        p99 = statistics.median(percentile(durations, 0.99) for durations in rounds)
        medians[name] = p50
        print(f"{name:<14} {p50:>8.1f} {p99:>8.1f}")
    met = medians["redis admit"] < REDIS_ADMIT_P50_TARGET_US
    print(f"redis admit p50 < {REDIS_ADMIT_P50_TARGET_US} us: {'PASS' if met else 'FAIL'}")
    return 0 if met else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-uvloop", action="store_true", help="the default asyncio loop")
    args = parser.parse_args()
    if args.no_uvloop:
        sys.exit(asyncio.run(run(args)))
    import uvloop

    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
