"""The fake upstream's embeddings: a fixed vector per input, made from the input itself, so a
test can compute what an answer relayed through aiservice must hold (`fake_embedding`).

Each value is a multiple of 1/128 in [-1, 1): exact in float32 as in JSON, so a vector that
went through a float32 array and back compares equal to the one computed here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from typing import Any

from aiservice.testing.wire import Body, word_count

DEFAULT_DIMENSIONS = 8

EmbeddingItem = str | list[int]


def fake_embedding(item: EmbeddingItem, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The vector the fake answers for one input (a text, or one list of token ids)."""
    seed = json.dumps(item, ensure_ascii=False).encode()
    return [(byte - 128) / 128 for byte in hashlib.shake_256(seed).digest(dimensions)]


def embedding_items(value: Any) -> list[EmbeddingItem] | None:
    """The inputs of an `input` as OpenAI reads it; None when it is not one."""
    if isinstance(value, str) and value:
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(entry, int) for entry in value):
        return [value]
    if all(isinstance(entry, str) and entry for entry in value):
        return list(value)
    if all(isinstance(entry, list) and entry and _ints(entry) for entry in value):
        return list(value)
    return None


def embedding_list(body: Body) -> Body:
    """The answer to an embeddings request whose `input` `embedding_items` accepted."""
    items = embedding_items(body.get("input")) or []
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = fake_embedding(item, dimensions)
        encoded: Any = _base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(word_count(item) if isinstance(item, str) else len(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _ints(values: list[Any]) -> bool:
    return all(isinstance(value, int) and not isinstance(value, bool) for value in values)


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
