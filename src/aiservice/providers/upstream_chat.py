"""The chat completions wire format of an OpenAI-compatible upstream: the request aiservice
sends, and the decoding of the streamed chunks it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiservice.providers.base import (
    ChoiceFinished,
    GenerationEvent,
    GenerationRequest,
    PromptMessage,
    TextDelta,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
)
from aiservice.settings import ModelConfig
from aiservice.tokens import estimate_tokens

PATH = "/chat/completions"


def prompt_characters(request: GenerationRequest) -> int:
    return sum(len(m.content) for m in request.messages) + len(request.prompt or "")


@dataclass(slots=True)
class _ChoiceState:
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    text_chars: int = 0


def reported_usage(usage: dict[str, Any]) -> Usage:
    """An upstream's `usage` object (chat and legacy completions share its fields)."""
    return Usage(
        usage.get("prompt_tokens", 0),
        usage.get("completion_tokens", 0),
        (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
    )


class ChatDecoder:
    """Streamed chat chunks → generation events; the usage reported, or else estimated."""

    def __init__(self, request: GenerationRequest):
        self._request = request
        self._choices: dict[int, _ChoiceState] = {}
        self._usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> list[GenerationEvent]:
        if chunk.get("usage"):
            self._usage = reported_usage(chunk["usage"])
        events: list[GenerationEvent] = []
        for choice in chunk.get("choices") or []:
            events += self._choice(choice)
        return events

    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        completion_chars = sum(state.text_chars for state in self._choices.values())
        return Usage(
            estimate_tokens(prompt_characters(self._request)), estimate_tokens(completion_chars)
        )

    def _choice(self, choice: dict[str, Any]) -> list[GenerationEvent]:
        events: list[GenerationEvent] = []
        index = choice.get("index", 0)
        state = self._choices.setdefault(index, _ChoiceState())
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if text:
            state.text_chars += len(text)
            logprobs = (choice.get("logprobs") or {}).get("content")
            events.append(TextDelta(index, text, _logprobs(logprobs)))
        for call in delta.get("tool_calls") or []:
            slot = state.calls.setdefault(call.get("index", 0), {"id": "", "name": "", "args": ""})
            function = call.get("function") or {}
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] += function.get("name") or ""
            slot["args"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            calls = [
                ToolCall(slot["id"], slot["name"], slot["args"])
                for _, slot in sorted(state.calls.items())
            ]
            events.append(ChoiceFinished(index, choice["finish_reason"], calls or None))
        return events


def _logprobs(content: list[dict[str, Any]] | None) -> list[TokenLogprob] | None:
    if content is None:
        return None
    return [
        TokenLogprob(
            token=lp["token"],
            logprob=lp["logprob"],
            bytes=lp.get("bytes") or [],
            top_logprobs=[
                TopLogprob(t["token"], t["logprob"], t.get("bytes") or [])
                for t in lp.get("top_logprobs") or []
            ],
        )
        for lp in content
    ]


def as_chunk(completion: dict[str, Any]) -> dict[str, Any]:
    """A whole (non-streamed) chat completion as one chunk, for the same decoder."""
    return {
        "choices": [
            {
                "index": choice.get("index", 0),
                "delta": {
                    "content": (choice.get("message") or {}).get("content"),
                    "tool_calls": [
                        {**call, "index": position}
                        for position, call in enumerate(
                            (choice.get("message") or {}).get("tool_calls") or []
                        )
                    ],
                },
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason") or "stop",
            }
            for choice in completion.get("choices") or []
        ],
        "usage": completion.get("usage"),
    }


def chat_body(request: GenerationRequest, config: ModelConfig) -> dict[str, Any]:
    """The upstream's chat request: OpenAI's parameters, for its model name; streamed (with
    usage) when the client streams, whole otherwise."""
    body: dict[str, Any] = {
        "model": config.upstream_name,
        "messages": [_wire_message(m) for m in request.messages],
        "stream": request.stream,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    optional = {
        "max_tokens": request.max_tokens,
        "n": request.n if request.n != 1 else None,
        "stop": request.stop or None,
        "seed": request.seed,
        "frequency_penalty": request.frequency_penalty or None,
        "presence_penalty": request.presence_penalty or None,
        "logit_bias": {str(k): v for k, v in request.logit_bias.items()} or None,
        "logprobs": request.logprobs or None,
        "top_logprobs": request.top_logprobs or None,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    body.update({name: value for name, value in optional.items() if value is not None})
    output = request.output_format
    if output is not None and output.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif output is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.schema or {}, "strict": True},
        }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or "",
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("none", "auto", "required")
            else {"type": "function", "function": {"name": choice}}
        )
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


def _wire_message(message: PromptMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
        if not message.content:
            wire["content"] = None
    if message.tool_call_id:
        wire["tool_call_id"] = message.tool_call_id
    if message.name:
        wire["name"] = message.name
    return wire
