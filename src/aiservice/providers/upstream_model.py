"""What every kind of upstream model (chat, embeddings) builds from its `[[models]]` entry:
its circuit breaker, its key and its started HTTP client."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from redis.asyncio import Redis

from aiservice.providers.breaker import CircuitBreaker
from aiservice.providers.upstream_http import UpstreamHTTP
from aiservice.settings import ModelConfig

log = logging.getLogger(__name__)


def model_breaker(config: ModelConfig, redis: Redis | None) -> CircuitBreaker:
    # One circuit per upstream and model name: another model on the same server may work.
    return CircuitBreaker(
        f"{config.upstream_url}#{config.upstream_name}",
        config.breaker_failures,
        config.breaker_reset_s,
        redis,
    )


# Failures that say the host itself is out of reach, whatever the model: they count against
# the host's circuit too, which every model on that upstream shares.
HOST_FAILURES = frozenset({"connect error", "connect timeout"})


def host_breaker(config: ModelConfig, redis: Redis | None) -> CircuitBreaker:
    return CircuitBreaker(
        f"{config.upstream_url}#*", config.breaker_failures, config.breaker_reset_s, redis
    )


class UpstreamCircuits:
    """A model's circuit and its upstream host's: a request goes through when both let it; a
    host out of reach counts against both, an error the host answered against the model's
    only (another model on the same server may work)."""

    def __init__(self, model: CircuitBreaker, host: CircuitBreaker):
        self.model = model
        self.host = host

    async def allow(self) -> bool:
        return await self.host.allow() and await self.model.allow()

    async def failed(self, reason: str) -> None:
        await self.model.failed()
        if reason in HOST_FAILURES:
            await self.host.failed()

    async def succeeded(self) -> None:
        await self.model.succeeded()
        await self.host.succeeded()


def share_host_circuits(providers: Iterable[object]) -> list[CircuitBreaker]:
    """One host circuit per upstream URL for all its models (in this process; with Redis,
    for all processes); returns them, for the metrics."""
    shared: dict[str, CircuitBreaker] = {}
    for provider in providers:
        circuits = getattr(provider, "circuits", None)
        if isinstance(circuits, UpstreamCircuits):
            circuits.host = shared.setdefault(circuits.host.name, circuits.host)
    return list(shared.values())


async def started_client(config: ModelConfig) -> UpstreamHTTP:
    client = UpstreamHTTP(
        config.upstream_url,
        connect_s=config.connect_timeout_s,
        read_s=config.first_byte_timeout_s or config.timeout_s,
        pool_s=config.timeout_s,
        api_key=started_key(config),
    )
    await client.start()
    return client


def read_api_key(config: ModelConfig) -> str | None:
    """The upstream's key: the first line of `api_key_file`, else the variable `api_key_env`
    names (OPENAI_API_KEY by default); None: no key. Raises OSError if the file is unreadable."""
    if config.api_key_file is not None:
        lines = config.api_key_file.read_text(encoding="utf-8").strip().splitlines()
        return lines[0].strip() if lines else None
    return os.environ.get(config.upstream_key_variable) or None


def started_key(config: ModelConfig) -> str | None:
    try:
        return read_api_key(config)
    except OSError as exc:
        # Served without a key: the upstream's 401 says what is wrong; a reload may fix it.
        log.error(
            "upstream key file unreadable",
            extra={"model": config.name, "path": str(config.api_key_file), "error": str(exc)},
        )
        return None
