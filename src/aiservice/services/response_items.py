"""Items of the Responses API: input as stored (with ids), output built from a generation, and
both reduced to the chat messages a model sees."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiservice.providers.base import PromptMessage, ToolCall
from aiservice.services.response_request import InputItem

log = logging.getLogger(__name__)

Item = dict[str, Any]  # one item in OpenAI's wire shape, as stored and returned


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def stored_input_items(given: str | list[InputItem] | None) -> list[Item]:
    """The request's input as items with ids, the shape `input_items` lists them in."""
    if given is None:
        return []
    if isinstance(given, str):
        return [_message_item("user", given, None)]
    return [_stored_item(item) for item in given]


def _stored_item(item: InputItem) -> Item:
    if item.type == "item_reference":  # resolved by the service against the store
        return {"type": "item_reference", "id": item.id}
    if item.type == "message":
        assert item.role is not None and item.content is not None
        return _message_item(item.role, item.content, item.id)
    if item.type == "function_call":
        return {
            "id": item.id or new_id("fc"),
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "status": "completed",
        }
    output = item.output if isinstance(item.output, str) else _dump_parts(item.output or [])
    return {
        "id": item.id or new_id("fco"),
        "type": "function_call_output",
        "call_id": item.call_id,
        "output": output,
        "status": "completed",
    }


def _message_item(role: str, content: Any, item_id: str | None) -> Item:
    text_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": text_type, "text": content}]
    else:
        parts = _dump_parts(content)
    if role == "assistant":
        for part in parts:
            if part["type"] == "output_text":
                part.setdefault("annotations", [])
                part.setdefault("logprobs", [])
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "role": role,
        "content": parts,
        "status": "completed",
    }


def _dump_parts(parts: list[Any]) -> list[dict[str, Any]]:
    return [part.model_dump(exclude_none=True, by_alias=True) for part in parts]


def prompt_messages(items: list[Item]) -> list[PromptMessage]:
    """The chat messages a model sees for these items, in order. Consecutive function calls
    become one assistant turn, as a chat model expects them."""
    messages: list[PromptMessage] = []
    pending_calls: list[ToolCall] = []

    def flush_calls() -> None:
        if pending_calls:
            messages.append(PromptMessage("assistant", "", tuple(pending_calls)))
            pending_calls.clear()

    for item in items:
        kind = item.get("type", "message")
        if kind == "function_call":
            pending_calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
            continue
        flush_calls()
        if kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else _text_of(output)
            messages.append(PromptMessage("tool", text, tool_call_id=item["call_id"]))
        else:
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append(PromptMessage(role, _text_of(item["content"])))
    flush_calls()
    return messages


def _text_of(parts: list[dict[str, Any]]) -> str:
    """The text of a message's parts; the others (images, files) are dropped, and logged:
    the local models read text only."""
    skipped = [p["type"] for p in parts if p["type"] not in ("input_text", "output_text", "text")]
    if skipped:
        log.info("non-text content ignored by a text-only model", extra={"part_types": skipped})
    return "".join(p.get("text") or "" for p in parts if p["type"] not in skipped)


def message_output(text: str, status: str = "completed", item_id: str | None = None) -> Item:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_output_item(call: ToolCall, status: str = "completed") -> Item:
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }
