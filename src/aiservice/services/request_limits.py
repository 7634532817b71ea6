"""How many entries a request's lists may hold (docs/api.md, "Request limits").

The body size limit (`max_request_bytes`) bounds the bytes; these bound the entries, which is
what the work grows with: validation, the chat template, the tokenizer, stored items. OpenAI
publishes no such numbers for messages or input items: these are ours, far above what any
context window holds. The field limits are checked while a body is validated; a large body is
first counted as plain JSON (`check_array_sizes`), because validation holds the interpreter for
its whole run (about 100 ms per 100,000 entries) and would stall every other request meanwhile,
while parsing and counting let other threads in every few milliseconds.
"""

from __future__ import annotations

from typing import Any

from aiservice.errors import InvalidRequest, array_too_long

MAX_MESSAGES = 10_000  # chat completions: `messages`
MAX_INPUT_ITEMS = 10_000  # responses: `input` as a list of items
MAX_CONTENT_PARTS = 1_000  # one message's or item's `content` (and a tool output's parts)
MAX_ARRAY_LENGTH = 10_000  # any other array in a body
MAX_ARRAY_ENTRIES = 50_000  # all arrays in a body together


def check_array_sizes(document: Any) -> None:
    """Refuse a parsed body with an array over MAX_ARRAY_LENGTH or more than
    MAX_ARRAY_ENTRIES array entries in all, naming the first offending array."""
    entries = 0
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            if len(value) > MAX_ARRAY_LENGTH:
                raise array_too_long(path or "body", MAX_ARRAY_LENGTH, len(value))
            entries += len(value)
            if entries > MAX_ARRAY_ENTRIES:
                raise InvalidRequest(
                    f"The request holds more than {MAX_ARRAY_ENTRIES} array entries in all; "
                    "send fewer messages, items or content parts.",
                    code="array_above_max_length",
                )
            pending.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
