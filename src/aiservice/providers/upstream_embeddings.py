"""Embeddings from an OpenAI-compatible upstream (`POST {base_url}/embeddings`), with the chat
upstream's resilience: the same pooled HTTP client, the same retries of 429, 5xx, timeouts and
dropped connections (backoff honouring `Retry-After`), the same circuit breaker per upstream
and model name. 400s come back to the client as they were; 401, 403 and 404 as our 502.

The upstream is always asked for floats, which every OpenAI-compatible server sends (not all
of them send base64); the client's `encoding_format` is applied to the answer here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from aiservice.errors import UpstreamUnavailable
from aiservice.providers.embedding import EmbeddingCall, EmbeddingProvider, Embeddings

# The chat upstream's retry policy and its translation of an upstream's error answers.
from aiservice.providers.upstream import (
    _refusal,
    _Transient,
    _wait_backoff_or_retry_after,
    record_attempt,
)
from aiservice.providers.upstream_http import TransportFailure, UpstreamHTTP
from aiservice.providers.upstream_model import (
    UpstreamCircuits,
    host_breaker,
    model_breaker,
    started_client,
)
from aiservice.settings import ModelConfig
from aiservice.tokens import estimate_tokens

log = logging.getLogger(__name__)

PATH = "/embeddings"
_Answer = tuple[NDArray[np.float32], int | None]  # the vectors, the tokens reported if any


class UpstreamEmbedder(EmbeddingProvider):
    """One configured upstream embedding model."""

    def __init__(self, config: ModelConfig, redis: Redis | None = None):
        self.config = config
        self.model_id = config.name
        self._client: UpstreamHTTP | None = None
        self.breaker = model_breaker(config, redis)
        self.circuits = UpstreamCircuits(self.breaker, host_breaker(config, redis))

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        self._client = await started_client(self.config)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def use_api_key(self, api_key: str | None) -> bool:
        """Send this key from the next request on; whether it changed (see UpstreamHTTP)."""
        return self._client is not None and self._client.use_api_key(api_key)

    async def embed(self, call: EmbeddingCall) -> Embeddings:
        client = self._client
        if client is None:
            raise UpstreamUnavailable(f"The model `{self.model_id}` is not started.")
        body = embeddings_body(call, self.config)
        async with asyncio.timeout(self.config.timeout_s):
            vectors, reported = await self._answer(client, body, call)
        tokens = reported if reported is not None else _estimated_tokens(call)
        return Embeddings(self.model_id, vectors, tokens)

    async def _answer(
        self, client: UpstreamHTTP, body: dict[str, Any], call: EmbeddingCall
    ) -> _Answer:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=_wait_backoff_or_retry_after,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(client, body, call)
        except _Transient as exc:
            tries = self.config.max_retries + 1
            raise UpstreamUnavailable(
                f"The upstream of `{self.model_id}` did not answer after {tries} "
                f"attempt{'s' if tries > 1 else ''} ({exc.reason})."
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, client: UpstreamHTTP, body: dict[str, Any], call: EmbeddingCall
    ) -> _Answer:
        if not await self.circuits.allow():
            raise UpstreamUnavailable(
                f"The upstream of `{self.model_id}` is failing; its circuit is open."
            )
        started = time.monotonic()
        reply = None
        try:
            reply = await client.post(client.url(PATH), body)
            content = await reply.read()
            if reply.status_code >= 400:
                refusal = _refusal(reply, content, self.model_id)
                if not isinstance(refusal, _Transient):  # refused for good: one attempt
                    self._record(call, started, f"HTTP {reply.status_code}")
                raise refusal
            answer = _parsed(content, len(call.inputs))
        except (_Transient, TransportFailure) as exc:
            self._record(call, started, exc.reason)
            await self.circuits.failed(exc.reason)
            raise _Transient(exc.reason) from None
        finally:
            if reply is not None:
                reply.close()
        self._record(call, started, "ok")
        await self.circuits.succeeded()
        return answer

    def _record(self, call: EmbeddingCall, started: float, outcome: str) -> None:
        record_attempt(call.attempts, self.model_id, self.config.upstream_url, started, outcome)


def embeddings_body(call: EmbeddingCall, config: ModelConfig) -> dict[str, Any]:
    """The request the upstream gets: the inputs as the client sent them, under the
    upstream's model name; `dimensions` only when the client set it."""
    body: dict[str, Any] = {
        "model": config.upstream_name,
        "input": call.inputs,
        "encoding_format": "float",
    }
    if call.dimensions is not None:
        body["dimensions"] = call.dimensions
    return body


def _parsed(content: bytes, count: int) -> _Answer:
    """The vectors of an embedding list of `count` entries, in input order (by `index`), and
    the prompt tokens the upstream reported; anything else is a retryable fault."""
    try:
        answer = json.loads(content)
        entries = sorted(answer["data"], key=lambda entry: entry.get("index", 0))
        rows = [_vector(entry["embedding"]) for entry in entries]
        if len(rows) != count or len({row.shape for row in rows}) != 1 or rows[0].ndim != 1:
            raise ValueError("not one vector per input")
        tokens = (answer.get("usage") or {}).get("prompt_tokens")
    except (ValueError, TypeError, KeyError, AttributeError):
        raise _Transient("malformed data") from None
    return np.stack(rows), tokens if isinstance(tokens, int) else None


def _vector(embedding: Any) -> NDArray[np.float32]:
    # An upstream that sends base64 although floats were asked for is understood all the same.
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


def _estimated_tokens(call: EmbeddingCall) -> int:
    """For an upstream that reports no usage: token inputs count themselves, texts are
    estimated from their length."""
    if call.inputs and isinstance(call.inputs[0], str):
        return estimate_tokens(sum(len(text) for text in call.inputs))  # type: ignore[misc]
    return sum(len(ids) for ids in call.inputs)
