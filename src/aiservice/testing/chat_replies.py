"""Chat completions as the fake upstream answers them: one object, or the chunks of a stream."""

from __future__ import annotations

from typing import Any

from aiservice.testing.wire import (
    DEFAULT_REPLY_PREFIX,
    FINGERPRINT,
    JSON_REPLY,
    Body,
    Reply,
    ReplySource,
    content_text,
    cut,
    reply_text,
    word_count,
)

_JSON_FORMATS = ("json_object", "json_schema")
_LOGPROB = -0.1


def plan_chat(body: Body, configured: ReplySource, override: str | None) -> Reply:
    """The reply to a chat request: a forced tool call, "{}" in JSON mode, else the text."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt_tokens = sum(word_count(content_text(m.get("content"))) for m in messages)
    tool_name = _forced_tool(body)
    if tool_name is not None:
        return Reply([JSON_REPLY], False, prompt_tokens, tool_name)
    last_user = next(
        (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in _JSON_FORMATS
    default = JSON_REPLY if json_mode else DEFAULT_REPLY_PREFIX + last_user
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    tokens, truncated = cut(reply_text(configured, override, body, default), limit)
    return Reply(tokens, truncated, prompt_tokens)


def chat_completion(body: Body, reply: Reply, serial: int, created: int) -> Body:
    """A `chat.completion` object (openai.types.chat.ChatCompletion)."""
    n = _choice_count(body)
    logprobs = _choice_logprobs(reply) if body.get("logprobs") is True else None
    choices = []
    for index in range(n):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_name is not None:
            message["content"] = None
            message["tool_calls"] = [_tool_call(serial, index, reply.tool_name, arguments=True)]
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": _finish_reason(reply),
            }
        )
    return {
        **_head(body, serial, created, "chat.completion"),
        "choices": choices,
        "usage": _usage(reply, n),
    }


def chat_chunks(body: Body, reply: Reply, serial: int, created: int) -> list[Body]:
    """The `chat.completion.chunk` objects of a stream, in order, choices interleaved: a role
    chunk, one chunk per word (or the tool call's two), a finish chunk; then, with
    `stream_options.include_usage`, one with no choices and the usage."""
    n = _choice_count(body)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    head = _head(body, serial, created, "chat.completion.chunk")
    if include_usage:
        head["usage"] = None  # as OpenAI sends it on every chunk but the last
    with_logprobs = body.get("logprobs") is True
    per_choice = [_steps(reply, serial, index, with_logprobs) for index in range(n)]
    chunks = []
    for step in zip(*per_choice, strict=True):  # step by step, the choices interleaved
        for index, (delta, logprobs, finish_reason) in enumerate(step):
            choice = {
                "index": index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
            chunks.append({**head, "choices": [choice]})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(reply, n)})
    return chunks


Step = tuple[Body, Body | None, str | None]  # a chunk's delta, logprobs and finish_reason


def _steps(reply: Reply, serial: int, index: int, with_logprobs: bool) -> list[Step]:
    """The chunks of one choice's stream."""
    if reply.tool_name is not None:
        call = {"index": 0, **_tool_call(serial, index, reply.tool_name, arguments=False)}
        return [
            ({"role": "assistant", "content": None, "tool_calls": [call]}, None, None),
            ({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, None, None),
            ({}, None, "tool_calls"),
        ]
    steps: list[Step] = [({"role": "assistant", "content": "", "refusal": None}, None, None)]
    for token in reply.tokens:
        logprobs = {"content": [_token_logprob(token)], "refusal": None} if with_logprobs else None
        steps.append(({"content": token}, logprobs, None))
    steps.append(({}, None, _finish_reason(reply)))
    return steps


def _forced_tool(body: Body) -> str | None:
    """The function a request forces: the first tool for "required", or the named one."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "required":
        first = tools[0] if isinstance(tools[0], dict) else {}
        function = first.get("function") if isinstance(first.get("function"), dict) else first
        return str(function.get("name") or "tool")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def _tool_call(serial: int, index: int, name: str, *, arguments: bool) -> Body:
    return {
        "id": f"call_fake_{serial:06d}_{index}",
        "type": "function",
        "function": {"name": name, "arguments": "{}" if arguments else ""},
    }


def _head(body: Body, serial: int, created: int, kind: str) -> Body:
    return {
        "id": f"chatcmpl-fake-{serial:06d}",
        "object": kind,
        "created": created,
        "model": str(body.get("model", "")),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _choice_count(body: Body) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _finish_reason(reply: Reply) -> str:
    if reply.tool_name is not None:
        return "tool_calls"
    return "length" if reply.truncated else "stop"


def _token_logprob(token: str) -> Body:
    return {
        "token": token,
        "logprob": _LOGPROB,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [],
    }


def _choice_logprobs(reply: Reply) -> Body:
    content = None if reply.tool_name else [_token_logprob(t) for t in reply.tokens]
    return {"content": content, "refusal": None}


def _usage(reply: Reply, n: int) -> Body:
    completion_tokens = reply.completion_tokens * n
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": reply.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
