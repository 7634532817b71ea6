"""Where the payment card numbers of a text are: 13 to 19 digits printed the way cards print
them, starting with a card network's digit, with a valid Luhn check digit."""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiservice.privacy.checksums import luhn_valid
from aiservice.privacy.patterns import SPACES, Span

# Digits joined by single spaces or dashes. A card is a slice of whole groups of such a run, so
# "1.2.3.4 4111111111111111" holds one, while no slice of a longer unbroken number is one.
_DIGIT_RUN = re.compile(rf"\d+(?:[{SPACES}-]\d+)*")
_SEPARATOR = re.compile(rf"[{SPACES}-]")
_FEWEST_DIGITS, _MOST_DIGITS = 13, 19
_MOST_GROUPS = 5  # 4 4 4 4 3
_UNEVEN_GROUPINGS = ([4, 6, 5], [4, 6, 4])  # American Express, Diners; others are groups of 4
# The first digit names the industry (ISO/IEC 7812): 2-6 are the card networks (Mastercard,
# Amex/Diners/JCB, Visa, Mastercard/Maestro, Discover/UnionPay); 0, 1, 7, 8 and 9 are airlines,
# petrol, telecoms and national schemes. Leaving those out halves the Luhn-valid numbers that
# are not cards (a SIRET is Luhn-valid too, and an IMEI starts with 35, so some still match).
_NETWORK_FIRST_DIGITS = "23456"


def card_spans(text: str) -> Iterator[Span]:
    """Each card number; two slices of one run can both qualify (overlaps are settled later)."""
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < _FEWEST_DIGITS:
            continue
        groups = [group.span() for group in re.finditer(r"\d+", run.group())]
        for first, last in _card_shaped_slices([end - start for start, end in groups]):
            start, end = groups[first][0], groups[last][1]
            candidate = run.group()[start:end]
            if _is_card_number(candidate):
                yield run.start() + start, run.start() + end


def _card_shaped_slices(sizes: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) group of each slice of a run grouped as cards are printed: one block of
    13-19 digits, groups of four with a shorter last one, or an uneven network grouping. An
    order number "405-1234567-1234567" has a card's length but none of these shapes."""
    for first, size in enumerate(sizes):
        if _FEWEST_DIGITS <= size <= _MOST_DIGITS:
            yield first, first
        for last in range(first + 1, min(first + _MOST_GROUPS, len(sizes))):
            shape = sizes[first : last + 1]
            if shape in _UNEVEN_GROUPINGS or (
                all(size == 4 for size in shape[:-1])
                and shape[-1] <= 4
                and _FEWEST_DIGITS <= sum(shape) <= _MOST_DIGITS
            ):
                yield first, last


def _is_card_number(candidate: str) -> bool:
    separators = set(_SEPARATOR.findall(candidate))
    digits = _SEPARATOR.sub("", candidate)
    return len(separators) <= 1 and digits[0] in _NETWORK_FIRST_DIGITS and luhn_valid(digits)
