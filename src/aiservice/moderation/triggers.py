"""Which words a cue cannot match without, so that most texts skip most scans.

Scanning a 2,000-character text with every category's expression costs about 8 ms, nearly all
of it trying each cue at each word and failing. But every cue needs some word of its own:
"{you_are} {gap3}{insult_strong}" cannot match a text without one of the insults. So for each
cue, `trigger_stems` reads its compiled pattern and returns the beginnings of the words one of
which any match must contain ("idiot", "moron", ...; at most `STEM_LENGTH` letters), choosing
the rarest such word of the pattern. A category is scanned only when one of its cues' stems
begins a word of the text; the answer is the same, only sooner.

The reading uses the standard library's own regex parser (`re._parser`: private, but the one
`re.compile` runs). Where a pattern is beyond it, the answer is None: always scan that cue.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

try:
    from re import _constants as sre_constants
    from re import _parser as sre_parser
except ImportError:  # older or other Pythons: every cue is then scanned every time
    sre_parser = None
    sre_constants = None

STEM_LENGTH = 5
# More alternatives than this and the cue is not worth gating (nor cheap to analyse).
_MAX_STEMS = 600
_SPACE = ord(" ")
# How many alternations deep a branch may choose its own stems (load time grows with it).
_MAX_DEPTH = 3
# Words most texts have. A stem that is one of these gates nothing, so the reading steps over
# them to the next word ("on purpose" is gated on "purpo"). All are shorter than 6 letters.
_COMMON_WORDS = (
    "i a an the to you u ur of and or is it its in on at for with by from as if so no not be am "
    "are was were been do don can will ll m re ve d s t my your we they he she him her me go get "
    "got up out off this that these those what how where when all just like any some very oh one "
    "two je j tu t te le la les l de des du un une et vous on il elle me m s se ce c qu ne n en y "
    "au aux ou sur sans pas plus que qui est es ai as a mon ma mes ton ta tes son sa ses va vas "
    "vais veux faire fait nous ils lui leur ca toi moi"
)
_COMMON = frozenset(_COMMON_WORDS.split())


class _Unknown(Exception):
    """The pattern can start with something other than literal letters here."""


def trigger_stems(pattern: str) -> frozenset[str] | None:
    """Word beginnings one of which every match of `pattern` contains, or None (no gate)."""
    if sre_parser is None:
        return None
    try:
        items = list(sre_parser.parse(pattern))
    except re.error:
        return None
    return _best(items, (), 0)


# What comes after the items being read: (items, index) frames, innermost first. Reading
# through frames instead of concatenating lists keeps the analysis linear in the pattern.
_Frames = tuple[tuple[Sequence[Any], int], ...]


def _best(items: Sequence[Any], after: _Frames, depth: int) -> frozenset[str] | None:
    """The rarest stems of a sequence that begins at a word start (and is followed by
    `after`), over the words it must contain; at an alternation, each branch may pick among
    its own words ("going to fuck" is gated on "fuck")."""
    best: frozenset[str] | None = None
    for position in _word_starts(items):
        for stems in _candidates(items, position, after, depth):
            if "" in stems or len(stems) > _MAX_STEMS:
                continue
            if best is None or _rarity(stems) > _rarity(best):
                best = stems
    return best


def _candidates(
    items: Sequence[Any], position: int, after: _Frames, depth: int
) -> list[frozenset[str]]:
    found = []
    with contextlib.suppress(_Unknown):
        found.append(frozenset(_stems(((items, position), *after), "", "")))
    op, value = items[position]
    if op is sre_constants.BRANCH and depth < _MAX_DEPTH:
        union: set[str] = set()
        following = ((items, position + 1), *after)
        for branch in value[1]:
            chosen = _best(branch, following, depth + 1)
            if chosen is None:
                return found
            union |= chosen
        found.append(frozenset(union))
    return found


def _rarity(stems: frozenset[str]) -> tuple[int, int, int, int]:
    """Higher is rarer: no very common word, then longer shortest stem, then fewer stems,
    then longer stems in all."""
    return (
        0 if stems & _COMMON else 1,
        min(len(stem) for stem in stems),
        -len(stems),
        sum(len(stem) for stem in stems),
    )


def _word_starts(items: Sequence[Any]) -> list[int]:
    """Positions in a sequence where a word must begin: the start, after a space, and after
    an optional run of words each ending in a space (the gaps)."""
    starts = [0]
    for index in range(1, len(items)):
        op, value = items[index - 1]
        after_space = op is sre_constants.LITERAL and value == _SPACE
        after_gap = (
            op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
            and (index - 1) in starts
            and _ends_with_space(value[2])
        )
        if after_space or after_gap:
            starts.append(index)
    return starts


def _ends_with_space(items: Sequence[Any]) -> bool:
    if not len(items):
        return False
    op, value = items[len(items) - 1]
    return op is sre_constants.LITERAL and value == _SPACE


def _stems(frames: _Frames, word: str, common: str) -> set[str]:
    """The stems of every way a match can go on from `frames`, given the letters of the
    current word read so far (`word`) and the last common word stepped over (`common`, the
    answer if nothing better follows). Raises _Unknown when no stem can be told."""
    while frames and frames[0][1] >= len(frames[0][0]):
        frames = frames[1:]
    if not frames:
        return {_settle(word, common)}
    items, index = frames[0]
    op, value = items[index]
    after: _Frames = ((items, index + 1), *frames[1:])
    if op is sre_constants.LITERAL and value != _SPACE:
        if len(word) > STEM_LENGTH:  # too long to be a common word: this is the stem
            return {word[:STEM_LENGTH]}
        return _or_settle(after, word + chr(value), common, word + chr(value), common)
    if op is sre_constants.LITERAL:  # a space: the word is complete
        if word and word not in _COMMON:
            return {word[:STEM_LENGTH]}
        return _or_settle(after, "", word or common, word, common)
    if op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return _stems(after, word, common)  # zero width: the match goes on from here
    if op is sre_constants.SUBPATTERN:
        return _stems(((value[-1], 0), *after), word, common)
    if op is sre_constants.BRANCH:
        found: set[str] = set()
        for branch in value[1]:
            found |= _stems(((branch, 0), *after), word, common)
            _bounded(found)
        return found
    if op is sre_constants.IN and all(kind is sre_constants.LITERAL for kind, _ in value):
        found = set()
        for _, char in value:
            found |= _stems((([(sre_constants.LITERAL, char)], 0), *after), word, common)
        return _bounded(found)
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
        low, high, body = value
        # Once repeated, what follows one copy of the body is not `after`: stop at the body.
        once: _Frames = ((body, 0), *after) if high == 1 else ((body, 0),)
        taken = _or_settle(once, word, common, word, common)
        return _bounded(taken | _stems(after, word, common)) if low == 0 else taken
    if word:
        return {word[:STEM_LENGTH]}  # the letters so far still begin the word
    raise _Unknown


def _or_settle(frames: _Frames, word: str, common: str, word_now: str, common_now: str) -> set[str]:
    """`_stems(frames, word, common)`, or what is known now if what follows cannot be told."""
    try:
        return _stems(frames, word, common)
    except _Unknown:
        settled = _settle(word_now, common_now)
        if not settled:
            raise
        return {settled}


def _settle(word: str, common: str) -> str:
    return (word or common)[:STEM_LENGTH]


def _bounded(stems: set[str]) -> set[str]:
    if len(stems) > _MAX_STEMS:
        raise _Unknown
    return stems
