"""OpenAI's moderation categories, and what a classifier returns for one text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# In the order OpenAI's answers list them.
CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

InputType = Literal["text", "image"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One text's scores (every category, each in [0, 1]) and which categories it is
    flagged for; `flagged` is true when any category is."""

    scores: dict[str, float]
    categories: dict[str, bool]

    @property
    def flagged(self) -> bool:
        return any(self.categories.values())

    @property
    def flagged_categories(self) -> list[str]:
        return [name for name in CATEGORIES if self.categories.get(name)]

    def result_fields(self) -> dict[str, Any]:
        """The fields of one result on the wire (/v1/moderations and moderated completions)."""
        return {
            "flagged": self.flagged,
            "categories": {name: self.categories[name] for name in CATEGORIES},
            "category_scores": {name: self.scores[name] for name in CATEGORIES},
            # The embedded classifier and our upstream parser score text only.
            "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
        }
