"""Where the phone numbers of a text are, by the numbering plans of Google's libphonenumber
(its `phonenumbers` port): any number written with + or 00 and a country code, and national
numbers of the caller's default region."""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher

# VALID: the digits must be a number the country's plan assigns, not merely one of the right
# length (POSSIBLE takes an order "#123456789" for a French number). Dates, times and prices are
# refused at every leniency; the stricter grouping levels would also refuse "06 1234 5678".
_LENIENCY = Leniency.VALID
# Candidates shorter than this many characters are skipped before they are parsed, which is
# most of the matcher's cost in an e-mail: the "14" and "30" of "14:30", the "1 234" of a price.
# No personal number is that short in France, Britain or North America (service short codes
# such as 3949 are not "valid numbers" at any length).
_SHORTEST_CANDIDATE = 6
_DIGIT = re.compile(r"\d")  # Unicode digits too, as the matcher reads them
# The matcher splits numbers at ordinary and no-break spaces only; French typography also puts
# thin ones in "06 12 34 56 78".
_THIN_SPACES = ("\u2007", "\u2009", "\u202f")


def phone_spans(text: str, default_region: str) -> Iterator[tuple[int, int]]:
    """Each phone number; `default_region` (ISO 3166 alpha-2) reads those written without +."""
    if not _DIGIT.search(text):
        return  # the matcher's own scan of 2,000 characters costs more than all the rest
    matcher = PhoneNumberMatcher(
        _with_plain_spaces(text),
        default_region,
        leniency=_LENIENCY,
        min_candidate_length=_SHORTEST_CANDIDATE,
    )
    for match in matcher:
        yield match.start, match.end


def canonical_phone(text: str, default_region: str) -> str:
    """The E.164 spelling, so that "06 12 34 56 78" and "+33 6 12 34 56 78" are one number."""
    try:
        number = phonenumbers.parse(_with_plain_spaces(text), default_region)
    except phonenumbers.NumberParseException:
        return "".join(char for char in text if char.isdigit())
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _with_plain_spaces(text: str) -> str:
    """`text` with thin spaces made ordinary ones: one character for one, so offsets hold.
    (str.translate would do it in one call, at ten times the cost of these scans.)"""
    for thin_space in _THIN_SPACES:
        if thin_space in text:
            text = text.replace(thin_space, " ")
    return text
