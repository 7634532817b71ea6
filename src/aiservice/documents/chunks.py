"""A text split into chunks of at most so many tokens: whole paragraphs packed together while
they fit, a paragraph too long cut between sentences, then lines, then words, and a word too
long cut anywhere. Every piece is counted once and chunks are sized by adding the counts up,
so a long text costs a few passes, never a count of the whole per cut."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from aiservice.documents.boundaries import SPLITTERS
from aiservice.tokens import estimate_tokens

MIN_CHUNK_TOKENS = 16
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_PARAGRAPH_SEPARATOR = "\n\n"
# A sum of counts is at least the count of the whole (for a length-based estimate: each part
# rounds up): when the sum says "full", the whole is counted, a few times a chunk at most.
_RECOUNTS = 6

TokenCounter = Callable[[str], int]


def estimate_text_tokens(text: str) -> int:
    """The tokens of `text` as aiservice.tokens estimates them from its length."""
    return estimate_tokens(len(text))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a split text, of at most the tokens it was split for."""

    index: int  # 0-based
    text: str
    tokens: int  # as counted by the `count_tokens` the text was split with


@dataclass(frozen=True, slots=True)
class _Piece:
    separator: str  # what stood between the previous piece and this one ("" after a hard cut)
    text: str
    tokens: int


def split_into_chunks(
    text: str, max_tokens: int, count_tokens: TokenCounter = estimate_text_tokens
) -> list[Chunk]:
    """`text` in chunks of at most `max_tokens` tokens (by `count_tokens`), in order, cut at
    the best boundaries there are; chunk texts joined with blank lines hold every paragraph.

    Raises ValueError when `max_tokens` is under MIN_CHUNK_TOKENS."""
    if max_tokens < MIN_CHUNK_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_CHUNK_TOKENS}, got {max_tokens}")
    pieces: list[_Piece] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        if paragraph := paragraph.strip():
            separator = _PARAGRAPH_SEPARATOR if pieces else ""
            _add_piece(
                pieces, separator, paragraph, count_tokens(paragraph), 0, max_tokens, count_tokens
            )
    return _packed(pieces, max_tokens, count_tokens)


def _add_piece(
    pieces: list[_Piece],
    separator: str,
    text: str,
    tokens: int,
    level: int,
    max_tokens: int,
    count: TokenCounter,
) -> None:
    """Append `text` as one piece if it fits, else as the pieces its boundaries of `level`
    (or the next that cuts it) make; a text with no boundary left is cut hard."""
    while tokens > max_tokens and level < len(SPLITTERS):
        parts = SPLITTERS[level](text)
        level += 1
        if len(parts) > 1:
            for number, (part_separator, part) in enumerate(parts):
                before = part_separator if number else separator
                _add_piece(pieces, before, part, count(part), level, max_tokens, count)
            return
    if tokens <= max_tokens:
        pieces.append(_Piece(separator, text, tokens))
        return
    for number, (cut, cut_tokens) in enumerate(_hard_cuts(text, max_tokens, count)):
        pieces.append(_Piece(separator if number == 0 else "", cut, cut_tokens))


def _hard_cuts(word: str, max_tokens: int, count: TokenCounter) -> list[tuple[str, int]]:
    """`word` in consecutive cuts of at most `max_tokens`, each as long as fits, with counts."""
    cuts: list[tuple[str, int]] = []
    start = 0
    while start < len(word):
        end = _longest_fit(word, start, max_tokens, count)
        cuts.append((word[start:end], count(word[start:end])))
        start = end
    return cuts


def _longest_fit(word: str, start: int, max_tokens: int, count: TokenCounter) -> int:
    """The end of the longest cut of `word` from `start` that fits: found by doubling a guess,
    then by bisection, so only cuts about its size are counted. At least one character."""
    fits, too_long = start + 1, len(word) + 1  # too_long: the shortest end known not to fit
    size = max_tokens  # a first guess, in characters: one a token fits any tokenizer
    while fits < len(word) and too_long > len(word):
        end = min(len(word), start + size)
        if count(word[start:end]) <= max_tokens:
            fits = end
        else:
            too_long = end
        size *= 2
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if count(word[start:middle]) <= max_tokens:
            fits = middle
        else:
            too_long = middle
    # Not between a letter and its combining accent (a decomposed "é"), when it can be helped.
    end = fits
    while end > start + 1 and end < len(word) and unicodedata.combining(word[end]):
        end -= 1
    return end


def _packed(pieces: list[_Piece], max_tokens: int, count: TokenCounter) -> list[Chunk]:
    """Consecutive pieces packed greedily into chunks, each recounted as a whole."""
    chunks: list[Chunk] = []
    separator_tokens: dict[str, int] = {}
    start = 0
    while start < len(pieces):
        end = _greedy_end(pieces, start, max_tokens, count, separator_tokens)
        text = _joined(pieces, start, end)
        tokens = count(text)
        # A real tokenizer may count a whole above the sum of its parts: give back pieces.
        while tokens > max_tokens and end - start > 1:
            end -= 1
            text = _joined(pieces, start, end)
            tokens = count(text)
        chunks.append(Chunk(index=len(chunks), text=text, tokens=tokens))
        start = end
    return chunks


def _greedy_end(
    pieces: list[_Piece],
    start: int,
    max_tokens: int,
    count: TokenCounter,
    separator_tokens: dict[str, int],
) -> int:
    """Where the chunk beginning with pieces[start] ends: pieces are added while their counts
    (and their separators') add up to no more than `max_tokens`, or the recount says so."""
    total = pieces[start].tokens
    end = start + 1
    recounts = _RECOUNTS
    while end < len(pieces):
        piece = pieces[end]
        if piece.separator not in separator_tokens:
            separator_tokens[piece.separator] = count(piece.separator)
        guess = total + separator_tokens[piece.separator] + piece.tokens
        if guess > max_tokens:
            if not recounts:
                break
            recounts -= 1
            guess = count(_joined(pieces, start, end + 1))
            if guess > max_tokens:
                break
        total = guess
        end += 1
    return end


def _joined(pieces: list[_Piece], start: int, end: int) -> str:
    return pieces[start].text + "".join(
        piece.separator + piece.text for piece in pieces[start + 1 : end]
    )
