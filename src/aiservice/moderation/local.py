"""The embedded moderation classifier: lexicons and patterns in English and French, and
alt-profanity-check's offensive-language model for harassment. CPU only, nothing fetched.

How each category is assessed, and how well, is in docs/moderation.md.
"""

from __future__ import annotations

import threading

from aiservice.moderation.categories import Verdict
from aiservice.moderation.lexicon import Lexicon
from aiservice.moderation.normalise import normalise
from aiservice.moderation.offensive import OffensiveLanguageModel
from aiservice.moderation.scoring import settle
from aiservice.moderation.targeted_offence import TargetedOffence


class LocalModerator:
    """Scores texts on OpenAI's 13 moderation categories, in process."""

    name = "aiservice-moderation-local"

    def __init__(self) -> None:
        self._lexicon: Lexicon | None = None
        self._offence: TargetedOffence | None = None
        self._loading = threading.Lock()

    def load(self) -> None:
        """Load the offensive-language model (about 2 s) and compile the lexicon (about
        0.5 s). Safe to call from several threads: the work is done once."""
        with self._loading:
            if self._lexicon is not None:
                return
            model = OffensiveLanguageModel()
            model.load()
            lexicon = Lexicon.from_package()
            self._offence = TargetedOffence(model)
            self._lexicon = lexicon  # set last: `ready` means everything is there

    @property
    def ready(self) -> bool:
        return self._lexicon is not None

    def verdict(self, text: str) -> Verdict:
        """One text's verdict (loads first if `load` has not run)."""
        if self._lexicon is None:
            self.load()
        assert self._lexicon is not None and self._offence is not None
        normalised = normalise(text)
        raw = self._lexicon.scores(normalised)
        # Swearing in sexual content is sexual, not aimed abuse; the lexicon's own
        # harassment cues still count there.
        offence = 0.0 if raw["sexual"] >= 0.5 else self._offence.score(normalised)
        if offence:
            raw["harassment"] = 1.0 - (1.0 - raw["harassment"]) * (1.0 - offence)
        return settle(raw)

    def verdicts(self, texts: list[str]) -> list[Verdict]:
        """Every text's verdict, in order. The offensive model is evaluated without
        scikit-learn (see offensive.py), so a batch has no per-call cost to share: it is
        the single-text path, once per text."""
        return [self.verdict(text) for text in texts]
