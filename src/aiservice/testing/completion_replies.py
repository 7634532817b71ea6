"""Legacy text completions as the fake upstream answers them (`POST /v1/completions`): one
object, or the chunks of a stream, which have the same shape."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from aiservice.testing.wire import (
    DEFAULT_REPLY_PREFIX,
    FINGERPRINT,
    Body,
    Reply,
    ReplySource,
    cut,
    reply_text,
    word_count,
)

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
_LOGPROB = -0.1


def prompts_of(body: Body) -> list[str]:
    """The request's prompts: a string, a list of strings, or none (an empty prompt)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return [p if isinstance(p, str) else "" for p in prompt] or [""]
    return [prompt] if isinstance(prompt, str) else [""]


def plan_completions(body: Body, configured: ReplySource, override: str | None) -> list[Reply]:
    """The reply to each prompt: "Fake reply to: <prompt>" unless another is configured, cut
    to `max_tokens` words (16 when absent, as at OpenAI)."""
    limit = body.get("max_tokens", DEFAULT_MAX_TOKENS)
    replies = []
    for prompt in prompts_of(body):
        text = reply_text(configured, override, body, DEFAULT_REPLY_PREFIX + prompt)
        tokens, truncated = cut(text, limit)
        replies.append(Reply(tokens, truncated, word_count(prompt)))
    return replies


def completion_object(body: Body, replies: list[Reply], serial: int, created: int) -> Body:
    """A `text_completion` object (openai.types.Completion): `n` choices per prompt, choice j
    of prompt p at index p * n + j."""
    n = _choice_count(body)
    prompts = prompts_of(body)
    choices = []
    for position, reply in enumerate(replies):
        opening = prompts[position] if body.get("echo") is True else ""
        for j in range(n):
            choices.append(
                {
                    "index": position * n + j,
                    "text": opening + reply.text,
                    "logprobs": _logprobs(body, reply.tokens, len(opening)),
                    "finish_reason": _finish_reason(reply),
                }
            )
    return {**_head(body, serial, created), "choices": choices, "usage": _usage(replies, n)}


def completion_chunks(body: Body, replies: list[Reply], serial: int, created: int) -> list[Body]:
    """The chunks of a stream, choices interleaved word by word: with `echo` a chunk of the
    prompt first, a chunk per word, a last one per choice with only its `finish_reason`; then,
    with `stream_options.include_usage`, one with no choices and the usage."""
    n = _choice_count(body)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    head = _head(body, serial, created)
    if include_usage:
        head["usage"] = None  # as OpenAI sends it on every chunk but the last
    prompts = prompts_of(body)
    per_choice = [
        _steps(body, reply, prompts[position] if body.get("echo") is True else "")
        for position, reply in enumerate(replies)
        for _ in range(n)
    ]
    chunks = []
    for step in zip_longest(*per_choice):
        for index, choice in enumerate(step):
            if choice is not None:
                chunks.append({**head, "choices": [{"index": index, **choice}]})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(replies, n)})
    return chunks


def _steps(body: Body, reply: Reply, opening: str) -> list[Body]:
    steps = [{"text": opening, "logprobs": None, "finish_reason": None}] if opening else []
    offset = len(opening)
    for token in reply.tokens:
        steps.append(
            {"text": token, "logprobs": _logprobs(body, [token], offset), "finish_reason": None}
        )
        offset += len(token)
    steps.append({"text": "", "logprobs": None, "finish_reason": _finish_reason(reply)})
    return steps


def _logprobs(body: Body, tokens: list[str], offset: int) -> Body | None:
    """With an integer `logprobs`: each word a token of logprob -0.1, its own only alternative."""
    asked = body.get("logprobs")
    if not isinstance(asked, int) or isinstance(asked, bool):
        return None
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [_LOGPROB] * len(tokens),
        "top_logprobs": [{token: _LOGPROB} for token in tokens],
        "text_offset": offsets,
    }


def _head(body: Body, serial: int, created: int) -> Body:
    return {
        "id": f"cmpl-fake-{serial:06d}",
        "object": "text_completion",
        "created": created,
        "model": str(body.get("model", "")),
        "system_fingerprint": FINGERPRINT,
    }


def _choice_count(body: Body) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def _usage(replies: list[Reply], n: int) -> dict[str, Any]:
    prompt_tokens = sum(reply.prompt_tokens for reply in replies)
    completion_tokens = sum(reply.completion_tokens for reply in replies) * n
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
