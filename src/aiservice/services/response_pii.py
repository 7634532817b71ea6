"""PII redaction applied to a response: its input items (and instructions) before they reach
the model and the store, its answer and its stream before they reach the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiservice.privacy.redaction import Redactor
from aiservice.privacy.streaming import StreamRestorer

# The fields of an input item that hold what someone wrote.
_TEXT_FIELDS = frozenset({"text", "content", "output", "arguments"})
_TEXT_DELTA = "response.output_text.delta"
_TEXT_DONE = "response.output_text.done"


def item_texts(items: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for item in items:
        _collect(item, texts)
    return texts


def _collect(value: Any, texts: list[str]) -> None:
    if isinstance(value, dict):
        for name, field in value.items():
            if name in _TEXT_FIELDS and isinstance(field, str):
                texts.append(field)
            else:
                _collect(field, texts)
    elif isinstance(value, list):
        for entry in value:
            _collect(entry, texts)


def redacted_items(items: list[dict[str, Any]], redactor: Redactor) -> list[dict[str, Any]]:
    return [_redacted(item, redactor) for item in items]


def _redacted(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, dict):
        return {
            name: redactor.redact(field)
            if name in _TEXT_FIELDS and isinstance(field, str)
            else _redacted(field, redactor)
            for name, field in value.items()
        }
    if isinstance(value, list):
        return [_redacted(entry, redactor) for entry in value]
    return value


def redacted_input(given: Any, redactor: Redactor) -> Any:
    """A request's `input` (a string, or input items) with its texts redacted."""
    if isinstance(given, str):
        return redactor.redact(given)
    if not isinstance(given, list):
        return given
    return [
        type(item).model_validate(_redacted(item.model_dump(exclude_unset=True), redactor))
        for item in given
    ]


def restored(value: Any, redactor: Redactor) -> Any:
    """`value` (a response body, an event) with the originals back in every string."""
    if isinstance(value, str):
        return redactor.restore(value)
    if isinstance(value, dict):
        return {name: restored(field, redactor) for name, field in value.items()}
    if isinstance(value, list):
        return [restored(entry, redactor) for entry in value]
    return value


async def restored_events(
    events: AsyncIterator[dict[str, Any]], redactor: Redactor
) -> AsyncIterator[dict[str, Any]]:
    """The events with the originals back. Text deltas go through a stream restorer per item,
    which holds back a placeholder cut across deltas; what it still holds when the item's text
    is done goes out as one more delta, and the sequence numbers after it move up by one."""
    restorers: dict[str, StreamRestorer] = {}
    last_delta: dict[str, dict[str, Any]] = {}
    shift = 0
    async for event in events:
        kind = event.get("type")
        if kind == _TEXT_DELTA:
            restorer = restorers.setdefault(event["item_id"], redactor.stream_restorer())
            event = {**event, "delta": restorer.feed(event["delta"])}
            last_delta[event["item_id"]] = event
        else:
            if kind == _TEXT_DONE and event["item_id"] in restorers:
                rest = restorers.pop(event["item_id"]).flush()
                if rest:
                    extra = {**last_delta[event["item_id"]], "delta": rest}
                    extra["sequence_number"] = event["sequence_number"] + shift
                    shift += 1
                    yield extra
            event = restored(event, redactor)
        if "sequence_number" in event:
            event["sequence_number"] += shift
        yield event
