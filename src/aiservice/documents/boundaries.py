"""Where a text too long for one chunk may be cut, from the best places to the worst: between
sentences, between lines, between words. Each splitter gives the text's pieces in order with the
whitespace written before each, so the pieces joined with their separators are the text again."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

Split = list[tuple[str, str]]  # (the whitespace before the piece, "" for the first; the piece)

_WHITESPACE = re.compile(r"\s+")
# The end of a sentence, up to a run of whitespace: . ! ? or …, then any closing quotes or
# brackets, which French sets off with a (non-breaking) space: « Il a dit non. » Puis...
_CLOSING = "»”\u2019\"')]"  # \u2019: the typographic apostrophe, as a closing single quote
_SENTENCE_END = re.compile(rf"[.!?…](?:\s*[{re.escape(_CLOSING)}])*\Z")
# What may not start a sentence: the closing marks above, and the punctuation French spaces
# ("Vraiment ? !", "non. ; et").
_NOT_A_START = set(_CLOSING + "!?;:,.…")
_LOOK_BACK = 16  # characters before a space in which a sentence's end is looked for


def sentences(text: str) -> Split:
    """`text` cut after each sentence's end (. ! ? followed by a space, as in English and
    French, quotes and French spaced punctuation allowed for)."""
    return _split_at(
        text,
        (space for space in _WHITESPACE.finditer(text) if _ends_sentence(text, space)),
    )


def lines(text: str) -> Split:
    """`text` cut at its line breaks (table rows, list items, verse, hard-wrapped text)."""
    return _split_at(text, (space for space in _WHITESPACE.finditer(text) if "\n" in space.group()))


def words(text: str) -> Split:
    """`text` cut at every run of whitespace."""
    return _split_at(text, _WHITESPACE.finditer(text))


SPLITTERS: tuple[Callable[[str], Split], ...] = (sentences, lines, words)


def _ends_sentence(text: str, space: re.Match[str]) -> bool:
    following = text[space.end() : space.end() + 1]
    if not following or following in _NOT_A_START:
        return False
    return _SENTENCE_END.search(text, max(0, space.start() - _LOOK_BACK), space.start()) is not None


def _split_at(text: str, spaces: Iterable[re.Match[str]]) -> Split:
    pieces: Split = []
    start, separator = 0, ""
    for space in spaces:
        if space.start() > start:  # leading whitespace is not a piece, nor before one
            pieces.append((separator if pieces else "", text[start : space.start()]))
        separator, start = space.group(), space.end()
    if start < len(text):
        pieces.append((separator if pieces else "", text[start:]))
    return pieces
