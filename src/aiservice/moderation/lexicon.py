"""The weighted cue patterns of the embedded classifier, loaded from the package's data files.

`lexicon_words.toml` holds word lists, and `lexicon_en.toml` / `lexicon_fr.toml` the cues:
per category, `[weight, pattern]` pairs whose patterns name the lists as `{list_name}`. At load
time every list is expanded into its cues and each cue is compiled on its own, with the words
it cannot match without (`triggers.trigger_stems`).

A text is then rated sentence by sentence: a sentence's words pick the cues worth trying, and
each such cue is searched once, in the sentences that picked it. Trying every cue everywhere
costs about 8 ms for 2,000 characters; this, a fraction of that, with the same answer
(`matches(..., gated=False)` is the slow reference the tests compare it with).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from aiservice.moderation.categories import CATEGORIES
from aiservice.moderation.triggers import STEM_LENGTH, trigger_stems

CUE_FILES = ("lexicon_en.toml", "lexicon_fr.toml")
WORDS_FILE = "lexicon_words.toml"

_REFERENCE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
# Lists name lists; deeper than this is a loop in the data, not a deliberate nesting.
_MAX_NESTING = 8


class LexiconError(ValueError):
    """The lexicon's data files are inconsistent: an unknown list, a bad pattern, a weight
    outside (0, 1]."""


@dataclass(frozen=True, slots=True)
class Cue:
    """One pattern of one category, as written in the data (before its lists are expanded)."""

    category: str
    weight: float
    pattern: str


class Lexicon:
    """Every category's cues, compiled; `scores` rates a normalised text."""

    def __init__(self, cues: Iterable[Cue], words: Mapping[str, str | list[str]]):
        self._expand = _Expander(words)
        by_category: dict[str, list[Cue]] = {name: [] for name in CATEGORIES}
        for cue in cues:
            if cue.category not in by_category:
                raise LexiconError(f"unknown category {cue.category!r} in cue {cue.pattern!r}")
            if not 0.0 < cue.weight <= 1.0:
                raise LexiconError(f"weight {cue.weight} outside (0, 1] in cue {cue.pattern!r}")
            by_category[cue.category].append(cue)
        self.cues = {name: tuple(found) for name, found in by_category.items()}
        self._all = [cue for found in self.cues.values() for cue in found]
        self._searches = [self._compile(cue) for cue in self._all]
        self._gates, self._always_tried = self._gate()

    @classmethod
    def from_package(cls) -> Lexicon:
        """The lexicon shipped in `aiservice/moderation/data`."""
        data = resources.files("aiservice.moderation") / "data"
        words = tomllib.loads((data / WORDS_FILE).read_text(encoding="utf-8"))
        cues: list[Cue] = []
        for file_name in CUE_FILES:
            table = tomllib.loads((data / file_name).read_text(encoding="utf-8"))
            cues.extend(_cues_of(table, file_name))
        return cls(cues, words)

    def matches(self, normalised: str, gated: bool = True) -> dict[str, list[Cue]]:
        """The cues that fired on a normalised text, by category (each cue once). `gated`
        False tries every cue on all of the text (what the gate must never change)."""
        if gated:
            texts = self._triggered(normalised)
        else:
            texts = dict.fromkeys(range(len(self._all)), normalised)
        fired: dict[str, list[Cue]] = {}
        for index in sorted(texts):
            if self._searches[index].search(texts[index]):
                cue = self._all[index]
                fired.setdefault(cue.category, []).append(cue)
        return fired

    def scores(self, normalised: str) -> dict[str, float]:
        """Each category's score for a normalised text: 1 - prod(1 - weight) over the cues
        that fired, 0.0 for a category with none."""
        scores = dict.fromkeys(CATEGORIES, 0.0)
        for category, cues in self.matches(normalised).items():
            scores[category] = 1.0 - math.prod(1.0 - cue.weight for cue in cues)
        return scores

    def _triggered(self, normalised: str) -> dict[int, str]:
        """What to try, by cue: the sentences with a word the cue cannot match without. No
        cue reaches over a sentence break (no pattern has a literal "."), so searching only
        those sentences finds every match."""
        gates = self._gates
        wanted: dict[int, list[str]] = {}
        for sentence in normalised.split(" . "):
            hit = set(self._always_tried)
            for word in set(sentence.split()):
                for length in range(1, min(len(word), STEM_LENGTH) + 1):
                    cues = gates.get(word[:length])
                    if cues:
                        hit.update(cues)
            for index in hit:
                wanted.setdefault(index, []).append(sentence.strip())
        # Rejoined with the breaks, so lookarounds at a sentence's ends see what they would.
        return {index: " " + " . ".join(found) + " . " for index, found in wanted.items()}

    def _gate(self) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
        """Stem -> the cues it may trigger, and the cues with no stems (tried on every text)."""
        gates: dict[str, list[int]] = {}
        always: list[int] = []
        for index, cue in enumerate(self._all):
            stems = trigger_stems(self._expand(cue.pattern))
            if stems is None:
                always.append(index)
                continue
            for stem in stems:
                gates.setdefault(stem, []).append(index)
        return {stem: tuple(found) for stem, found in gates.items()}, tuple(always)

    def _compile(self, cue: Cue) -> re.Pattern[str]:
        expanded = self._expand(cue.pattern)
        try:
            alone = re.compile(expanded)
        except re.error as error:
            raise LexiconError(f"cue {cue.pattern!r} does not compile: {error}") from None
        if alone.groups:
            raise LexiconError(f"cue {cue.pattern!r} has a capturing group; use (?:...)")
        # Whole words only: no letter or digit may touch a match on either side.
        return re.compile(r"(?<![a-z0-9])(?:" + expanded + r")(?![a-z0-9])")


class _Expander:
    """Replaces `{list_name}` in a pattern by the list's alternation, recursively."""

    def __init__(self, words: Mapping[str, str | list[str]]):
        self._words = words
        self._expanded: dict[str, str] = {}

    def __call__(self, pattern: str, depth: int = 0) -> str:
        if depth > _MAX_NESTING:
            raise LexiconError(f"lists nested too deep (a loop?) in {pattern!r}")
        return _REFERENCE.sub(lambda found: self._list(found.group(1), depth), pattern)

    def _list(self, name: str, depth: int) -> str:
        if name not in self._expanded:
            if name not in self._words:
                raise LexiconError(f"unknown word list {{{name}}}")
            value = self._words[name]
            entries = [value] if isinstance(value, str) else value
            inner = "|".join(self(entry, depth + 1) for entry in entries)
            self._expanded[name] = f"(?:{inner})"
        return self._expanded[name]


def _cues_of(table: Mapping[str, object], file_name: str) -> list[Cue]:
    cues = []
    for category, section in table.items():
        entries = section.get("cues", []) if isinstance(section, dict) else None
        if entries is None:
            raise LexiconError(f"{file_name}: [{category}] has no cues list")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2):
                raise LexiconError(f"{file_name}: [{category}] entry {entry!r} is not [w, pattern]")
            weight, pattern = entry
            cues.append(Cue(category, float(weight), str(pattern)))
    return cues
