"""The Responses wire format of an upstream that serves `POST /v1/responses` natively
(`responses_api = true`): aiservice still keeps the state (chains, conversations) and sends
the whole context as input items, with `store: false`; the upstream's streamed events are
decoded into the same generation events as chat chunks."""

from __future__ import annotations

from typing import Any

from aiservice.errors import UpstreamUnavailable
from aiservice.providers.base import (
    ChoiceFinished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    PromptMessage,
    TextDelta,
    ToolCall,
    Usage,
)
from aiservice.providers.upstream_chat import prompt_characters
from aiservice.settings import ModelConfig
from aiservice.tokens import estimate_tokens

PATH = "/responses"


class ResponsesDecoder:
    """Responses stream events → generation events (one choice); usage from the last event."""

    def __init__(self, request: GenerationRequest):
        self._request = request
        self._calls: list[ToolCall] = []
        self._text_chars = 0
        self._usage: Usage | None = None

    def feed(self, event: dict[str, Any]) -> list[GenerationEvent]:
        kind = event.get("type")
        if kind == "response.output_text.delta" and event.get("delta"):
            self._text_chars += len(event["delta"])
            return [TextDelta(0, event["delta"])]
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self._calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
            return []
        if kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            usage = response.get("usage")
            if usage:
                self._usage = Usage(
                    usage.get("input_tokens", 0),
                    usage.get("output_tokens", 0),
                    (usage.get("input_tokens_details") or {}).get("cached_tokens"),
                )
            return [ChoiceFinished(0, self._finish_reason(kind, response), self._calls or None)]
        if kind in ("response.failed", "error"):
            raise UpstreamUnavailable("The upstream failed the response.")
        return []

    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        return Usage(
            estimate_tokens(prompt_characters(self._request)), estimate_tokens(self._text_chars)
        )

    def _finish_reason(self, kind: str, response: dict[str, Any]) -> FinishReason:
        if kind == "response.incomplete":
            reason = (response.get("incomplete_details") or {}).get("reason")
            return "content_filter" if reason == "content_filter" else "length"
        return "tool_calls" if self._calls else "stop"


def responses_body(request: GenerationRequest, config: ModelConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": config.upstream_name,
        "input": [item for message in request.messages for item in _items(message)],
        "stream": True,
        "store": False,  # aiservice keeps the state
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    output = request.output_format
    if output is not None and output.type == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    elif output is not None:
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": "output",
                "schema": output.schema or {},
                "strict": True,
            }
        }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description or "",
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("none", "auto", "required")
            else {"type": "function", "name": choice}
        )
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


def _items(message: PromptMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": message.content,
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content or not message.tool_calls:
        items.append({"type": "message", "role": message.role, "content": message.content})
    items += [
        {
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
        for call in message.tool_calls
    ]
    return items
