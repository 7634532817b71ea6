"""What every kind of upstream model (chat, embeddings) builds from its `[[models]]` entry:
its circuit breaker, its key and its started HTTP client."""

from __future__ import annotations

import logging
import os

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
