"""Throttle failed Basic-auth logins per account and per client address."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from aiservice.errors import AIServiceError

# Enough for typos; far too few for guessing.
FAILURES_PER_ACCOUNT = RateLimitItemPerMinute(5)
FAILURES_PER_ADDRESS = RateLimitItemPerMinute(20)


class TooManyFailedLogins(AIServiceError):
    status_code = 429
    error_type = "invalid_request_error"
    default_code = "too_many_failed_logins"


class LoginThrottle:
    """Counts failures in a moving one-minute window; refuses further tries past the limits."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, account: str, address: str) -> None:
        for limit, scope, identity in (
            (FAILURES_PER_ACCOUNT, "account", account),
            (FAILURES_PER_ADDRESS, "address", address),
        ):
            if not await self._limiter.test(limit, scope, identity):
                refused = TooManyFailedLogins("Too many failed logins. Try again in a minute.")
                stats = await self._limiter.get_window_stats(limit, scope, identity)
                # When the oldest counted failure leaves the window, one more try is allowed.
                wait_s = max(1, math.ceil(stats.reset_time - time.time()))
                refused.headers["Retry-After"] = str(wait_s)
                raise refused

    async def failed(self, account: str, address: str) -> None:
        await self._limiter.hit(FAILURES_PER_ACCOUNT, "account", account)
        await self._limiter.hit(FAILURES_PER_ADDRESS, "address", address)
