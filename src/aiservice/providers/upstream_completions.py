"""The legacy text completions wire format of an upstream that serves `POST /v1/completions`
(`legacy_completions`): the request aiservice sends, and the decoding of what comes back. A
whole answer has the shape of a streamed chunk, so one decoder reads both."""

from __future__ import annotations

from typing import Any

from aiservice.providers.base import (
    ChoiceFinished,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from aiservice.providers.upstream_chat import prompt_characters, reported_usage
from aiservice.settings import ModelConfig
from aiservice.tokens import estimate_tokens

PATH = "/completions"


class CompletionDecoder:
    """Text completion chunks → generation events; the usage reported, or else estimated."""

    def __init__(self, request: GenerationRequest):
        self._request = request
        self._text_chars = 0
        self._usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> list[GenerationEvent]:
        if chunk.get("usage"):
            self._usage = reported_usage(chunk["usage"])
        events: list[GenerationEvent] = []
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            text = choice.get("text")
            logprobs = _logprobs(choice.get("logprobs"))
            if text or logprobs:
                self._text_chars += len(text or "")
                events.append(TextDelta(index, text or "", logprobs))
            if choice.get("finish_reason"):
                events.append(ChoiceFinished(index, choice["finish_reason"]))
        return events

    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        return Usage(
            estimate_tokens(prompt_characters(self._request)), estimate_tokens(self._text_chars)
        )


def _logprobs(legacy: dict[str, Any] | None) -> list[TokenLogprob] | None:
    """The legacy `{tokens, token_logprobs, top_logprobs}` as one entry per token."""
    if not legacy or not legacy.get("tokens"):
        return None
    logprobs = legacy.get("token_logprobs") or []
    tops = legacy.get("top_logprobs") or []
    entries = []
    for position, token in enumerate(legacy["tokens"]):
        top = tops[position] if position < len(tops) else None
        entries.append(
            TokenLogprob(
                token=token,
                logprob=logprobs[position] if position < len(logprobs) else 0.0,
                bytes=list(token.encode("utf-8")),
                top_logprobs=[
                    TopLogprob(text, value, list(text.encode("utf-8")))
                    for text, value in (top or {}).items()
                ],
            )
        )
    return entries


def completion_body(request: GenerationRequest, config: ModelConfig) -> dict[str, Any]:
    """The upstream's text completion request, for its model name; streamed (with usage) when
    the client streams, whole otherwise. `echo` is never sent: aiservice echoes the prompt."""
    body: dict[str, Any] = {
        "model": config.upstream_name,
        "prompt": request.prompt or "",
        "stream": request.stream,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    optional = {
        "max_tokens": request.max_tokens,
        "n": request.n if request.n != 1 else None,
        "best_of": request.best_of,
        "stop": request.stop or None,
        "seed": request.seed,
        "frequency_penalty": request.frequency_penalty or None,
        "presence_penalty": request.presence_penalty or None,
        "logit_bias": {str(k): v for k, v in request.logit_bias.items()} or None,
        # 0 is meaningful here: the sampled tokens' own logprobs, no alternatives.
        "logprobs": request.top_logprobs if request.logprobs else None,
        "suffix": request.suffix,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    body.update({name: value for name, value in optional.items() if value is not None})
    return body
