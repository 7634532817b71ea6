"""What every kind of upstream model (chat, embeddings) builds from its `[[models]]` entry:
its circuit breaker and its started HTTP client."""

from __future__ import annotations

import os

from redis.asyncio import Redis

from aiservice.providers.breaker import CircuitBreaker
from aiservice.providers.upstream_http import UpstreamHTTP
from aiservice.settings import ModelConfig


def model_breaker(config: ModelConfig, redis: Redis | None) -> CircuitBreaker:
    # One circuit per upstream and model name: another model on the same server may work.
    return CircuitBreaker(
        f"{config.upstream_url}#{config.upstream_name}",
        config.breaker_failures,
        config.breaker_reset_s,
        redis,
    )


async def started_client(config: ModelConfig) -> UpstreamHTTP:
    client = UpstreamHTTP(
        config.upstream_url,
        connect_s=config.connect_timeout_s,
        read_s=config.first_byte_timeout_s or config.timeout_s,
        pool_s=config.timeout_s,
        api_key=os.environ.get(config.upstream_key_variable),
    )
    await client.start()
    return client
