"""Which rate limits a request counts against, and its admission before any model work.

A request counts against its key's limits ("key:<id>") and its user's ("user:<id>"): the
configured defaults (`[rate_limits.key]`, `[rate_limits.user]`) with the key's or the user's
own values over them, field by field. The master key has none. Its priority is its
`x-priority` header, else the key's (or user's) default, never above the key's `max_priority`
nor the user's.
Tokens are charged up front as an estimate (the request body at four characters a token, plus
the output it may ask for) and settled on the real usage when the request ends.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from redis.asyncio import Redis

from aiservice.errors import InvalidRequest
from aiservice.governance.accounts import MASTER, Principal
from aiservice.governance.rate_limits import Admission, Priority, RateLimiter, RateLimits
from aiservice.settings import RateLimitConfig

_RANK = {"high": 0, "medium": 1, "low": 2}
PRIORITY_HEADER = "x-priority"


@dataclass(frozen=True, slots=True)
class Admitted:
    admission: Admission  # its x-ratelimit-* headers, its token charge
    priority: Priority
    counts_tokens: bool  # a token limit applies: the charge is worth settling


class RequestAdmission:
    """Admits model requests against their rate limits; one per process."""

    def __init__(self, config: RateLimitConfig, limiter: RateLimiter, redis: Redis | None = None):
        self._config = config
        self.limiter = limiter
        self._redis = redis  # the limiter's, closed with it
        self._key_defaults = config.key.model_dump(exclude_none=True)
        self._user_defaults = config.user.model_dump(exclude_none=True)

    async def admit(
        self,
        principal: Principal,
        body_bytes: int,
        output_tokens: int,
        priority: str | None,
        *,
        batch: bool = False,
    ) -> Admitted | None:
        """Wait for (up to `max_wait_s`) and take the request's share of its limits; None when
        no limit applies. Raises RateLimitExceeded (429) when refused. A `batch` line counts
        against `batch_share` of each limit, so some room is always left for interactive
        requests of the same key and user."""
        if principal == MASTER:
            return None
        key = (
            _values(self._key_defaults, principal.key_limits)
            if principal.key_id is not None
            else None
        )
        user = _values(self._user_defaults, principal.user_limits)
        checks: dict[str, RateLimits] = {}
        if key is not None and key.limits is not None:
            checks[f"key:{principal.key_id}"] = key.limits
        if user.limits is not None:
            checks[f"user:{principal.owner}"] = user.limits
        chosen = _priority(priority, key if key is not None else user)
        if _RANK[chosen] < _RANK[user.max_priority]:
            chosen = Priority(user.max_priority)  # a user's maximum holds for all their keys
        if not checks:
            return None
        if batch and self._config.batch_share < 1:
            share = self._config.batch_share
            checks = {subject: _shared(limits, share) for subject, limits in checks.items()}
        tokens = math.ceil(body_bytes / 4) + output_tokens
        admission = await self.limiter.admit(
            checks, tokens, chosen, max_wait_s=self._config.max_wait_s
        )
        counts_tokens = any(
            limits.tpm is not None or limits.tpd is not None for limits in checks.values()
        )
        return Admitted(admission, chosen, counts_tokens)

    async def stats(self) -> list[dict[str, Any]]:
        """What each key and user did recently (shared through Redis; else this process's)."""
        return [
            {"object": "rate_limit.stats", **asdict(stats)}
            for stats in sorted(await self.limiter.stats(), key=lambda stats: stats.subject)
        ]

    async def close(self) -> None:
        await self.limiter.close()
        if self._redis is not None:
            await self._redis.aclose()


class _Effective:
    """One subject's effective values: its limits (None: unlimited) and priorities."""

    __slots__ = ("limits", "max_priority", "priority")

    def __init__(self, values: dict[str, Any]):
        limits = RateLimits(
            rpm=values.get("rpm"),
            rpd=values.get("rpd"),
            tpm=values.get("tpm"),
            tpd=values.get("tpd"),
            burst=values.get("burst"),
        )
        self.limits = limits if limits != RateLimits() else None
        self.priority = values.get("priority", "medium")
        self.max_priority = values.get("max_priority", "high")


@lru_cache(maxsize=1024)
def _shared(limits: RateLimits, share: float) -> RateLimits:
    """`limits` cut to `share` of each (at least 1: a limit of 1 is not closed to batches)."""
    return RateLimits(
        *(
            None if value is None else max(1, math.floor(value * share))
            for value in limits.ordered()
        )
    )


def _values(defaults: dict[str, Any], own: dict[str, Any] | None) -> _Effective:
    return _effective(tuple(sorted({**defaults, **(own or {})}.items())))


@lru_cache(maxsize=4096)
def _effective(items: tuple[tuple[str, Any], ...]) -> _Effective:
    # Keys and users share few distinct settings: built once each, not per request.
    return _Effective(dict(items))


def _priority(asked: str | None, values: _Effective) -> Priority:
    if asked is None:
        wanted = values.priority
    else:
        wanted = asked.strip().lower()
        if wanted not in _RANK:
            raise InvalidRequest(
                f"Invalid x-priority header {asked!r}: use high, medium or low.",
                param=PRIORITY_HEADER,
            )
    # A key cannot raise itself above its maximum: it gets its maximum.
    if _RANK[wanted] < _RANK[values.max_priority]:
        wanted = values.max_priority
    return Priority(wanted)
