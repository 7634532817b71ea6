"""The Response object as it goes on the wire, stored and streamed.

Every field OpenAI returns is present (null when unknown): the open Responses specification
requires them all, and clients read them without checking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiservice.providers.base import Usage
from aiservice.services.moderated_generation import ModerationReport
from aiservice.services.response_items import Item
from aiservice.services.response_request import ResponseRequest
from aiservice.store.response_status import ResponseStatus

Body = dict[str, Any]


@dataclass(slots=True)
class ResponseState:
    """What a response is at one moment; `body()` renders it."""

    id: str
    created_at: int
    request: ResponseRequest
    model: str
    status: ResponseStatus = ResponseStatus.IN_PROGRESS
    output: list[Item] = field(default_factory=list)
    usage: Usage | None = None
    error: dict[str, str] | None = None
    incomplete_reason: str | None = None
    completed_at: int | None = None
    moderation: ModerationReport | None = None  # a moderated response's findings

    def body(self) -> Body:
        request = self.request
        text_format = _format_echo(request)
        tool_choice: Any = request.tool_choice or "auto"
        if not isinstance(tool_choice, str):
            tool_choice = {"type": "function", "name": tool_choice.name}
        body = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": bool(request.background),
            "completed_at": self.completed_at,
            "error": self.error,
            "incomplete_details": (
                {"reason": self.incomplete_reason} if self.incomplete_reason else None
            ),
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": request.max_tool_calls,
            "metadata": request.metadata or {},
            "model": self.model,
            "output": self.output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "prompt_cache_key": request.prompt_cache_key,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": request.safety_identifier,
            "service_tier": "default",
            "store": request.stored,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "text": {"format": text_format, "verbosity": "medium"},
            "tool_choice": tool_choice,
            "tools": [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                    "strict": tool.strict if tool.strict is not None else True,
                }
                for tool in request.tools or []
            ],
            "top_logprobs": request.top_logprobs or 0,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "truncation": request.truncation or "disabled",
            # Zeros until the response has run: OpenAI's schema has no null usage.
            "usage": _usage(self.usage or Usage(0, 0)),
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if request.user is not None:  # a string or absent, in OpenAI's schema
            body["user"] = request.user
        if request.conversation_id is not None:
            body["conversation"] = {"id": request.conversation_id}
        if self.moderation is not None:
            body["moderation"] = self.moderation.response_body()
        return body


def _format_echo(request: ResponseRequest) -> dict[str, Any]:
    text_format = request.text.format if request.text is not None else None
    if text_format is None or text_format.type == "text":
        return {"type": "text"}
    if text_format.type == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "name": text_format.name,
        "schema": text_format.schema_,
        # A string: OpenAI's schema types it so, the open specification requires the key.
        "description": text_format.description or "",
        "strict": bool(text_format.strict),
    }


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }
