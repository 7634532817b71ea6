"""Harassment evidence from the offensive-language model: English sentences aimed at someone.

alt-profanity-check rates words, not targets: it gives "this product is shit" and "you are
shit" the same probability, and never sees "you" (an English stop word to its vectoriser).
Offence at a product is not harassment, so only sentences that address or describe a person
are read, and only in English text (the model's language; on French it says little). Praise
with a swear word in it ("you did a fucking great job") and negated sentences ("you are not
an idiot") are skipped too.
"""

from __future__ import annotations

import re

from aiservice.moderation.normalise import sentences
from aiservice.moderation.offensive import OffensiveLanguageModel

# The model's probability only counts from here, and its contribution rises to WEIGHT at 1.0:
# a sentence at 0.95 adds about 0.4, enough to flag with one more cue but not alone.
FLOOR = 0.8
WEIGHT = 0.75

_ADDRESSED = re.compile(
    r"(?<![a-z0-9])(?:you|u|ya|ur|youre|yourself|yourselves|yall|ye"
    r"|(?:he|she|they) (?:is|s|are|re|was|were)|what an?"
    r"|(?:this|that) (?:guy|woman|man|idiot|person|girl|dude|bitch|bastard))(?![a-z0-9])"
)
_PRAISE = re.compile(
    r"(?<![a-z0-9])(?:great|awesome|amazing|thanks?|love|best|brilliant|legend|proud"
    r"|congrats|congratulations|excellent|fantastic|wonderful|well done|good job|nice job"
    r"|genius|impressive|incredible|beautiful)(?![a-z0-9])"
)
# The model scores "not an idiot" as it scores "an idiot".
_NEGATED = re.compile(
    r"(?<![a-z0-9])(?:not|never|no longer|isn t|aren t|wasn t|weren t)(?![a-z0-9])"
)
_ENGLISH_WORDS = (
    "the and is are you your to of it that this for with have was not be on what we my they me do "
    "at can will just so but if"
)
_ENGLISH = frozenset(_ENGLISH_WORDS.split())
_FRENCH_WORDS = (
    "le la les de des et est je tu vous pas que qui un une du en pour ce c mon ma ne avec sur il "
    "elle nous on au mais tes ton ta"
)
_FRENCH = frozenset(_FRENCH_WORDS.split())


def looks_english(normalised: str) -> bool:
    """More English function words than French ones (and at least one)."""
    words = normalised.split()
    english = sum(word in _ENGLISH for word in words)
    return english > 0 and english >= sum(word in _FRENCH for word in words)


class TargetedOffence:
    """The harassment score that the offensive-language model adds to a normalised text."""

    def __init__(self, model: OffensiveLanguageModel):
        self._model = model

    def score(self, normalised: str) -> float:
        """WEIGHT * how far the most offensive addressed English sentence is above FLOOR."""
        if not looks_english(normalised):
            return 0.0
        worst = 0.0
        for sentence in sentences(normalised):
            if not _ADDRESSED.search(sentence) or _PRAISE.search(sentence):
                continue
            if _NEGATED.search(sentence):
                continue
            # The model's vectoriser keeps words of two letters or more.
            probability = self._model.probability_of_words(
                word for word in sentence.split() if len(word) > 1
            )
            worst = max(worst, probability)
        return WEIGHT * max(0.0, (worst - FLOOR) / (1.0 - FLOOR))
