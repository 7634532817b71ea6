"""The fake upstream's moderation answers: an input is flagged (for harassment) exactly when
its text contains `FLAG_MARK`, so tests know what to expect without a classifier."""

from __future__ import annotations

from typing import Any

from aiservice.moderation.categories import CATEGORIES
from aiservice.testing.wire import Body

FLAG_MARK = "[flag]"


def moderation_answer(body: Body, serial: int) -> Body:
    return {
        "id": f"modr-fake-{serial}",
        "model": str(body.get("model")),
        "results": [_result(text, kinds) for text, kinds in _inputs(body.get("input"))],
    }


def _inputs(value: Any) -> list[tuple[str, list[str]]]:
    """One (text, input types) per result: each string, or all parts of a multi-modal list."""
    if isinstance(value, str):
        return [(value, ["text"])]
    if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        return [(entry, ["text"]) for entry in value]
    parts = value if isinstance(value, list) else []
    text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
    kinds = (
        ["image"]
        if any(isinstance(p, dict) and p.get("type") == "image_url" for p in parts)
        else []
    )
    return [(text, ["text", *kinds])]


def _result(text: str, kinds: list[str]) -> Body:
    flagged = FLAG_MARK in text
    return {
        "flagged": flagged,
        "categories": {name: flagged and name == "harassment" for name in CATEGORIES},
        "category_scores": {
            name: 0.97 if flagged and name == "harassment" else 0.01 for name in CATEGORIES
        },
        "category_applied_input_types": dict.fromkeys(CATEGORIES, kinds),
    }
