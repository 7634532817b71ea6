"""From raw category scores to a Verdict: thresholds, and sub-categories kept inside parents.

OpenAI's sub-categories are narrower cases of their parent: a text flagged for
`self-harm/intent` is flagged for `self-harm` too. The raw scores come from separate cues and
need not agree, so `settle` makes them: a parent's score is at least each child's, and a
flagged child flags its parent. `hate/threatening` is violence against a group, so it also
lifts `violence`. The other way does not hold: "I know where you live" is a threat without
violence, and a bomb recipe is illicit/violent without depicting violence.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiservice.moderation.categories import CATEGORIES, Verdict

# Every score is 1 - prod(1 - weight) over the cues that fired (see lexicon_en.toml): one
# strong cue (0.8-0.9) is enough, weak ones (0.2-0.45) need company. So one threshold
# serves all categories; it is per category so that one can move without the others.
THRESHOLDS: dict[str, float] = dict.fromkeys(CATEGORIES, 0.5)

# child -> what it implies, in an order where a child comes before its parents' parents.
IMPLIES: dict[str, tuple[str, ...]] = {
    "harassment/threatening": ("harassment",),
    "hate/threatening": ("hate", "violence"),
    "illicit/violent": ("illicit",),
    "self-harm/intent": ("self-harm",),
    "self-harm/instructions": ("self-harm",),
    "sexual/minors": ("sexual",),
    "violence/graphic": ("violence",),
}


def settle(raw: Mapping[str, float], thresholds: Mapping[str, float] = THRESHOLDS) -> Verdict:
    """The verdict for raw scores: every category in [0, 1], flags by threshold, and every
    flagged sub-category's parents flagged with it."""
    scores = {name: min(1.0, max(0.0, float(raw.get(name, 0.0)))) for name in CATEGORIES}
    flags = {name: scores[name] >= thresholds[name] for name in CATEGORIES}
    for child, parents in IMPLIES.items():
        for parent in parents:
            scores[parent] = max(scores[parent], scores[child])
            flags[parent] = flags[parent] or flags[child]
    return Verdict(scores=scores, categories=flags)
