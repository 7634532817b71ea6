"""Token counts estimated from text length, for whoever has text but no tokenizer's count:
the meter of a stream stopped before its end, and the upstreams that report no usage."""

from __future__ import annotations

import math


def estimate_tokens(characters: int) -> int:
    """About four characters a token, as OpenAI's guide says: for an upstream that reports
    no usage, and for prompts before the upstream has counted them."""
    return math.ceil(characters / 4)
