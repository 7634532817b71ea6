"""The OpenAI-compatible upstream provider: OpenAI itself, vLLM, Ollama, llama.cpp's server,
another gateway — anything that serves `POST /v1/chat/completions`, or `POST /v1/responses`
for upstreams configured with `responses_api` (the wire formats: upstream_chat.py and
upstream_responses.py). Text completions go to the upstream's `POST /v1/completions` when it
serves them (`legacy_completions`, upstream_completions.py), else they are emulated through chat.

A client that streams gets the upstream's stream (chat: with `include_usage`); one that does
not gets one whole answer, read at once — cheaper than a stream on both sides (Responses
upstreams are always streamed). Until the first chunk has
arrived an attempt may be retried (429, 5xx, timeouts, dropped connections, malformed data),
with exponential backoff and jitter, waiting at least what `Retry-After` asks; 400, 401, 403
and 404 are never retried. After the first chunk, a failure ends the generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from redis.asyncio import Redis
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from aiservice.errors import InvalidRequest, UpstreamRefused, UpstreamUnavailable
from aiservice.providers import upstream_chat, upstream_completions, upstream_responses
from aiservice.providers.base import (
    ChatProvider,
    ChoiceFinished,
    GenerationEvent,
    GenerationRequest,
    PreparedGeneration,
    PromptMessage,
    TextDelta,
)
from aiservice.providers.text_options import refuse_insertion_and_ranking
from aiservice.providers.upstream_chat import (
    ChatDecoder,
    as_chunk,
    chat_body,
    prompt_characters,
)
from aiservice.providers.upstream_completions import CompletionDecoder, completion_body
from aiservice.providers.upstream_http import TransportFailure, UpstreamHTTP, UpstreamReply
from aiservice.providers.upstream_model import (
    UpstreamCircuits,
    host_breaker,
    model_breaker,
    started_client,
)
from aiservice.providers.upstream_responses import ResponsesDecoder, responses_body
from aiservice.settings import ModelConfig
from aiservice.tokens import estimate_tokens

log = logging.getLogger(__name__)


class _Transient(Exception):
    """An attempt that may be tried again; `retry_after` is what the upstream asked for."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(slots=True)
class Attempt:
    """One try at the upstream, kept for the usage ledger and the logs."""

    model: str
    upstream: str
    outcome: str  # "ok" or the reason it failed
    latency_ms: float


def record_attempt(
    attempts: list[Attempt], model: str, upstream: str, started: float, outcome: str
) -> None:
    """Add one try to `attempts`; failures are worth a log line each (a success is already in
    the access line). Shared by the chat and the embedding upstreams."""
    attempt = Attempt(model, upstream, outcome, round((time.monotonic() - started) * 1000, 2))
    attempts.append(attempt)
    log.log(
        logging.DEBUG if outcome == "ok" else logging.WARNING,
        "upstream attempt",
        extra={
            "model": attempt.model,
            "upstream": attempt.upstream,
            "outcome": attempt.outcome,
            "latency_ms": attempt.latency_ms,
            "attempt": len(attempts),
        },
    )


class UpstreamProvider(ChatProvider):
    """One configured upstream model."""

    def __init__(self, config: ModelConfig, redis: Redis | None = None):
        self.config = config
        self.model_id = config.name
        self._client: UpstreamHTTP | None = None
        self.endpoint: str | None = None  # the upstream's chat or responses URL
        self.breaker = model_breaker(config, redis)
        self.circuits = UpstreamCircuits(self.breaker, host_breaker(config, redis))

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        config = self.config
        client = await started_client(config)
        self._client = client
        path = upstream_responses.PATH if config.responses_api else upstream_chat.PATH
        self.endpoint = client.url(path)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def use_api_key(self, api_key: str | None) -> bool:
        """Send this key from the next request on; whether it changed (see UpstreamHTTP)."""
        return self._client is not None and self._client.use_api_key(api_key)

    async def prepare_chat(self, request: GenerationRequest) -> PreparedGeneration:
        if self._client is None:
            raise UpstreamUnavailable(f"The model `{self.model_id}` is not started.")
        self._refuse_unsupported(request)
        return UpstreamGeneration(self, self._client, request)

    def _refuse_unsupported(self, request: GenerationRequest) -> None:
        """What the configuration says the upstream would drop: refused, not answered short."""
        if request.n > 1 and self.config.supports_n is False:
            raise InvalidRequest(
                f"The upstream of `{self.model_id}` answers one choice per request: ask for "
                "n = 1 (several requests for several choices).",
                param="n",
            )
        if (request.logprobs or request.top_logprobs) and self.config.supports_logprobs is False:
            raise InvalidRequest(
                f"The upstream of `{self.model_id}` reports no logprobs.", param="logprobs"
            )

    async def prepare_text(self, request: GenerationRequest) -> PreparedGeneration:
        if self._client is None:
            raise UpstreamUnavailable(f"The model `{self.model_id}` is not started.")
        self._refuse_unsupported(request)
        if self.config.serves_legacy_completions:
            return UpstreamGeneration(self, self._client, request, legacy=True)
        # Emulated: the prompt as the one user message of a chat completion.
        refuse_insertion_and_ranking(request, self.model_id)
        if request.logprobs and self.config.responses_api:
            raise InvalidRequest(
                f"The upstream of `{self.model_id}` reports no logprobs (it is asked through "
                "the Responses API).",
                param="logprobs",
            )
        message = PromptMessage("user", request.prompt or "")
        chat = replace(request, messages=[message], prompt=None)
        return UpstreamGeneration(self, self._client, chat)


class UpstreamGeneration(PreparedGeneration):
    def __init__(
        self,
        provider: UpstreamProvider,
        client: UpstreamHTTP,
        request: GenerationRequest,
        *,
        legacy: bool = False,
    ):
        self._provider = provider
        self._client = client
        self._request = request
        self._legacy = legacy  # a text completion, to the upstream's /v1/completions
        self._endpoint = provider.endpoint
        config = provider.config
        if legacy:
            self._endpoint = client.url(upstream_completions.PATH)
            self._body = completion_body(request, config)
        elif config.responses_api:
            self._body = responses_body(request, config)
        else:
            self._body = chat_body(request, config)
        self.model = provider.model_id
        # An estimate until the upstream reports its count (which then wins).
        self.prompt_tokens = estimate_tokens(prompt_characters(request))
        self.attempts: list[Attempt] = []
        self._in_flight: float | None = None  # when the attempt being made began

    def _decoder(self) -> ChatDecoder | ResponsesDecoder | CompletionDecoder:
        if self._legacy:
            return CompletionDecoder(self._request)
        if self._provider.config.responses_api:
            return ResponsesDecoder(self._request)
        return ChatDecoder(self._request)

    async def events(self) -> AsyncIterator[GenerationEvent]:
        config = self._provider.config
        finished = False  # a choice has ended: the answer is whole, not cut short
        try:
            async with asyncio.timeout(config.timeout_s):
                response, lines, first = await self._first_chunk()
                try:
                    decoder = self._decoder()
                    answered = _AnswerCheck(self._request)
                    chunk: dict[str, Any] | None = first
                    while chunk is not None:
                        for event in decoder.feed(chunk):
                            finished = finished or isinstance(event, ChoiceFinished)
                            answered.saw(event)
                            yield event
                        try:
                            chunk = await _next_chunk(lines, after_first=True)
                        except TransportFailure as exc:
                            self._broken(exc.reason)
                    if not finished and self._body.get("stream", True):
                        self._broken("truncated")  # the stream ended cleanly, the answer not
                    answered.check(self.model)
                    # Read to the end of the body: closing it early drops the connection, and
                    # every request would connect (and shake hands) anew.
                    async for _ in lines:
                        pass
                finally:
                    response.close()
        except TimeoutError:  # timeout_s, the whole request's, ran out
            await self._timed_out()
        yield decoder.usage()

    def _broken(self, reason: str) -> NoReturn:
        log.warning("upstream stream broken", extra={"model": self.model, "error_type": reason})
        raise UpstreamUnavailable(
            f"The upstream of `{self.model}` stopped answering mid-stream."
        ) from None

    async def _timed_out(self) -> NoReturn:
        """timeout_s ran out: an attempt it cut short is a failed one (`timeout`)."""
        if self._in_flight is not None:
            self._record(self._in_flight, "timeout")
            await self._provider.circuits.failed("timeout")
        timeout_s = self._provider.config.timeout_s
        raise UpstreamUnavailable(
            f"The upstream of `{self.model}` did not finish within {timeout_s:g} s (timeout_s)."
        ) from None

    async def _first_chunk(
        self,
    ) -> tuple[UpstreamReply, AsyncIterator[str], dict[str, Any] | None]:
        """Open the stream and read its first chunk, retrying what may be retried."""
        try:
            # The first attempt outside tenacity: setting its loop up cost more than the
            # attempt's own Python work, and most requests need no second attempt.
            return await self._attempt()
        except _Transient as exc:
            failure = exc
        try:
            return await self._retry_after(failure)
        except _Transient as exc:
            tries = self._provider.config.max_retries + 1
            raise UpstreamUnavailable(
                f"The upstream of `{self.model}` did not answer after {tries} "
                f"attempt{'s' if tries > 1 else ''} ({exc.reason})."
            ) from None

    async def _retry_after(
        self, first_failure: _Transient
    ) -> tuple[UpstreamReply, AsyncIterator[str], dict[str, Any] | None]:
        """The attempts after a failed first one. Tenacity counts the first too (it is
        replayed as tenacity's attempt 1), so the waits and the stop are those of one loop."""
        config = self._provider.config
        retrying = AsyncRetrying(
            stop=stop_after_attempt(config.max_retries + 1),
            wait=_wait_backoff_or_retry_after,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        replay: _Transient | None = first_failure
        async for attempt in retrying:
            with attempt:
                if replay is not None:
                    failure, replay = replay, None
                    raise failure
                return await self._attempt()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self) -> tuple[UpstreamReply, AsyncIterator[str], dict[str, Any] | None]:
        if not await self._provider.circuits.allow():
            raise UpstreamUnavailable(
                f"The upstream of `{self.model}` is failing; its circuit is open."
            )
        return await self._try_once()

    async def _try_once(self) -> tuple[UpstreamReply, AsyncIterator[str], dict[str, Any] | None]:
        provider = self._provider
        started = self._in_flight = time.monotonic()  # until recorded
        response: UpstreamReply | None = None
        try:
            response = await self._client.post(self._endpoint, self._body)
            if response.status_code >= 400:
                refusal = _refusal(response, await response.read(), self.model)
                if not isinstance(refusal, _Transient):
                    # Refused for good (the request, or our credentials): one attempt in the
                    # metrics and logs, not retried, and no mark against the upstream's health.
                    self._record(started, f"HTTP {response.status_code}")
                raise refusal
            if not self._body.get("stream", True):
                # A non-streamed answer, read whole: one chunk for the decoder, nothing after.
                whole = _json_object(await response.read())
                # A whole text completion already has the shape of a chunk.
                first, lines = (whole if self._legacy else as_chunk(whole)), _nothing()
            else:
                lines = response.lines()
                first = await _next_chunk(lines, after_first=False)
        except (_Transient, TransportFailure) as exc:
            self._record(started, exc.reason)
            await provider.circuits.failed(exc.reason)
            if response is not None:
                response.close()
            if isinstance(exc, _Transient):
                raise
            raise _Transient(exc.reason) from None
        except BaseException:
            if response is not None:
                response.close()
            raise
        self._record(started, "ok")
        await provider.circuits.succeeded()
        return response, lines, first

    def _record(self, started: float, outcome: str) -> None:
        self._in_flight = None
        record_attempt(
            self.attempts, self.model, self._provider.config.upstream_url, started, outcome
        )


class _AnswerCheck:
    """What the request asked for and the answer must hold: `n` choices, logprobs. Some
    servers drop either without a word; the client then gets an error, never less than it
    asked for as if it were all."""

    def __init__(self, request: GenerationRequest):
        self._wanted = request.n
        self._wants_logprobs = request.logprobs
        self._finished: set[int] = set()
        self._texts = 0
        self._logprobs = 0

    def saw(self, event: GenerationEvent) -> None:
        if isinstance(event, ChoiceFinished):
            self._finished.add(event.index)
        elif isinstance(event, TextDelta):
            self._texts += 1
            self._logprobs += event.logprobs is not None

    def check(self, model: str) -> None:
        if len(self._finished) < self._wanted:
            raise UpstreamRefused(
                f"The upstream of `{model}` answered {len(self._finished)} of the "
                f"{self._wanted} choices asked for (n); if it never serves more than one, set "
                "supports_n = false for it."
            )
        if self._wants_logprobs and self._texts and not self._logprobs:
            raise UpstreamRefused(
                f"The upstream of `{model}` answered without the logprobs asked for; if it "
                "never reports them, set supports_logprobs = false for it."
            )


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        raise _Transient("malformed data") from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise _Transient("malformed data")
    return body


async def _nothing() -> AsyncIterator[str]:
    return
    yield  # an async generator that yields nothing


def _wait_backoff_or_retry_after(state: RetryCallState) -> float:
    backoff = wait_exponential_jitter(initial=0.5, max=8, jitter=0.5)(state)
    exc = state.outcome.exception() if state.outcome else None
    asked = exc.retry_after if isinstance(exc, _Transient) else None
    return max(backoff, asked or 0.0)


def _refusal(response: UpstreamReply, content: bytes, model: str) -> Exception:
    status = response.status_code
    message, param = _upstream_error(content)
    if status == 429 or status >= 500:
        return _Transient(f"HTTP {status}", _retry_after(response))
    if status in (400, 422):
        return InvalidRequest(message or "The upstream refused the request.", param=param)
    # 401/403/404 and the like are about our configuration, not the client's request.
    return UpstreamRefused(f"The upstream of `{model}` refused the request (HTTP {status}).")


def _upstream_error(content: bytes) -> tuple[str | None, str | None]:
    try:
        error = json.loads(content).get("error") or {}
        return error.get("message"), error.get("param")
    except (ValueError, AttributeError):
        return None, None


def _retry_after(response: UpstreamReply) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def _next_chunk(lines: AsyncIterator[str], *, after_first: bool) -> dict[str, Any] | None:
    """The next `data:` chunk of the SSE stream; None at `[DONE]` or the end."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return None
        try:
            chunk = json.loads(data)
        except ValueError:
            if after_first:
                raise UpstreamUnavailable("The upstream sent malformed data.") from None
            raise _Transient("malformed data") from None
        if not isinstance(chunk, dict):
            raise (
                _Transient("malformed data")
                if not after_first
                else UpstreamUnavailable("The upstream sent malformed data.")
            )
        return chunk
    if not after_first:
        raise _Transient("empty stream")
    return None
