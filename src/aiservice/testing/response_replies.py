"""Responses API answers of the fake upstream: the Response object and its streaming events."""

from __future__ import annotations

from typing import Any

from aiservice.testing.wire import (
    DEFAULT_REPLY_PREFIX,
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


def plan_response(body: Body, configured: ReplySource, override: str | None) -> Reply:
    """The reply to a Responses request: "{}" for a JSON text format, else the text."""
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        items: list[Body] = [{"role": "user", "content": raw_input}]
    else:
        items = [item for item in raw_input or [] if isinstance(item, dict)]
    instructions = body.get("instructions")
    prompt_tokens = word_count(instructions if isinstance(instructions, str) else "") + sum(
        word_count(content_text(item.get("content"))) for item in items
    )
    last_user = next(
        (content_text(i.get("content")) for i in reversed(items) if i.get("role") == "user"), ""
    )
    json_mode = _text_format(body).get("type") in _JSON_FORMATS
    default = JSON_REPLY if json_mode else DEFAULT_REPLY_PREFIX + last_user
    tokens, truncated = cut(
        reply_text(configured, override, body, default), body.get("max_output_tokens")
    )
    return Reply(tokens, truncated, prompt_tokens)


def response_object(body: Body, reply: Reply, serial: int, created: int) -> Body:
    """The finished `response` object (openai.types.responses.Response)."""
    status = "incomplete" if reply.truncated else "completed"
    message = _message(serial, reply.text, status)
    return _response(body, serial, created, status=status, output=[message], reply=reply)


def response_events(body: Body, reply: Reply, serial: int, created: int) -> list[Body]:
    """The streaming events of one response, in order, `sequence_number` from 0."""
    finished = response_object(body, reply, serial, created)
    in_progress = _response(body, serial, created, status="in_progress", output=[], reply=None)
    message = finished["output"][0]
    part = message["content"][0]
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    events: list[Body] = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": _text_part("")},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": token, "logprobs": []}
        for token in reply.tokens
    ]
    events += [
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": f"response.{finished['status']}", "response": finished},
    ]
    for sequence_number, event in enumerate(events):
        event["sequence_number"] = sequence_number
    return events


def _response(
    body: Body, serial: int, created: int, *, status: str, output: list[Body], reply: Reply | None
) -> Body:
    """Every field OpenAI returns, the request's settings echoed where it echoes them."""
    finished = status in ("completed", "incomplete")
    return {
        "id": f"resp_fake_{serial:06d}",
        "object": "response",
        "created_at": created,
        "status": status,
        "background": bool(body.get("background")),
        "completed_at": created if finished else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": body.get("metadata") or {},
        "model": str(body.get("model", "")),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": _number(body.get("temperature"), 1.0),
        "text": {"format": _text_format(body), "verbosity": "medium"},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": _number(body.get("top_p"), 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": _usage(reply),
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


def _message(serial: int, text: str, status: str) -> Body:
    return {
        "id": f"msg_fake_{serial:06d}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> Body:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _text_format(body: Body) -> Body:
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, dict) else None
    return text_format if isinstance(text_format, dict) else {"type": "text"}


def _number(value: Any, default: float) -> float:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else default


def _usage(reply: Reply | None) -> Body:
    """The reply's usage; zeros before it has run (OpenAI's Response schema has no null usage)."""
    input_tokens, output_tokens = (
        (reply.prompt_tokens, reply.completion_tokens) if reply else (0, 0)
    )
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
