"""One pass that puts a text into the shape the lexicon's patterns are written for.

The result is lower case ASCII letters and digits, one space between words, and " . " where
the text had sentence punctuation, with one space before and after the whole. So
"J'VAIS te défoncer !!" (with a straight or a curly apostrophe) becomes
" j vais te defoncer . ", and a pattern never has to spell accents, capitals, apostrophes or
hyphens.
"""

from __future__ import annotations

import re
import unicodedata

# Elided French ("j'vais", "t'es", "qu'il") and English contractions ("I'm", "don't") become
# two words: patterns then spell "j vais", "t es", "i m", "don t".
# Straight, curly and modifier apostrophes, backtick, acute accent and prime.
_APOSTROPHES = "'\u2019\u2018\u02bc\u201b`\u00b4\u2032"
# Hyphen-minus, the Unicode hyphens and dashes.
_HYPHENS = "-\u2010\u2011\u2012\u2013\u2014\u2015"
_LIGATURES = {"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "đ": "d", "ł": "l", "\u0131": "i"}


def _folding_table() -> dict[int, str]:
    """Latin letters with accents to their base letter, computed once from Unicode's
    decompositions (so "é", "È", "ç", "ï" all fold, and nothing is listed by hand)."""
    table: dict[int, str] = {}
    for code in range(0xC0, 0x250):
        decomposed = unicodedata.normalize("NFKD", chr(code))
        base = "".join(char for char in decomposed if not unicodedata.combining(char))
        if base != chr(code) and base.isascii():
            table[code] = base.lower()
    for char, folded in _LIGATURES.items():
        table[ord(char)] = folded
    for char in _APOSTROPHES + _HYPHENS:
        table[ord(char)] = " "
    return table


_FOLD = _folding_table()
_SENTENCE_END = re.compile(r"[.!?;:…]+")
_NOT_A_WORD = re.compile(r"[^a-z0-9.]+")
# "stupiiiid", "fuuuck", "nooo": three or more of a letter become one. Doubled letters are
# left alone ("kill", "connard"), and few words have a letter three times over.
_ELONGATED = re.compile(r"([a-z])\1{2,}")


def normalise(text: str) -> str:
    """The text as the patterns see it: folded, lower case, words and sentence breaks."""
    folded = text.lower().translate(_FOLD)
    folded = _ELONGATED.sub(r"\1", folded)
    folded = _SENTENCE_END.sub(" . ", folded)
    # The padding makes every sentence break exactly " . ", even at either end.
    return " " + _NOT_A_WORD.sub(" ", folded).strip() + " "


def sentences(normalised: str) -> list[str]:
    """The sentences of a normalised text, without their breaks."""
    return [part.strip() for part in normalised.split(" . ") if part.strip()]
