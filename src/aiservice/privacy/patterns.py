"""Where the e-mail addresses, IBANs and IP addresses of a text are: a regular expression finds
each candidate, then the IBAN check digits or the stdlib's address parser have the last word."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from aiservice.privacy.checksums import IBAN_LENGTHS, iban_valid

Span = tuple[int, int]
# The spaces that split long numbers: ordinary, no-break (bank statements) and the thin ones of
# French typography, as word processors and mail clients insert them.
SPACES = " \u00a0\u2009\u202f"

# A dot-atom local part of the characters people actually use (RFC 5322 also allows quotes and
# braces that no one writes), host labels, and a top-level domain of letters. `\w` is Unicode,
# so "frédéric@exemple.fr" is one address.
_EMAIL_LOCAL_PART = r"[\w%+-]+(?:\.[\w%+-]+)*"
_EMAIL_DOMAIN = r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])"
# A match starts only where a dotted run starts, which keeps a long "a.a.a.a..." from being
# rescanned from each of its dots.
_EMAIL = re.compile(rf"(?<![\w%+-])(?<![\w%+-]\.){_EMAIL_LOCAL_PART}@{_EMAIL_DOMAIN}")

# Two check digits after the two letters that start a word (matched from the digits, which
# prose has far fewer of than letters); the body is read by _IBAN_BODIES once the country says
# how long it must be, so a word after the IBAN is never taken for part of it.
_IBAN_HEAD = re.compile(r"\d(?<=(?<!\w)[A-Za-z]{2}\d)\d")
# One space allowed before any character: groups of four, and French RIB groups (5 5 11 2).
_IBAN_BODIES = {
    size: re.compile(rf"(?:[{SPACES}]?[A-Za-z0-9]){{{size}}}(?!\w)")
    for size in {length - 4 for length in IBAN_LENGTHS.values()}
}

# Four dotted numbers, not inside a longer dotted run ("1.2.3.4.5" is no address).
_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\.?\w)")
# At least two colons in a run of hex digits, colons and dots (an IPv4 tail); the stdlib then
# decides, after a sentence's final "." or ":" is taken off.
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*")
# Every IPv6 address holds one of these (it shortens with "::" or has all eight groups), and a
# pattern that starts with ":" is found at C speed: _IPV6 runs only in texts that have one.
_IPV6_HINT = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_WORD_CHARACTER = re.compile(r"\w")


def email_spans(text: str) -> Iterator[Span]:
    """Each e-mail address."""
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield match.span()


def iban_spans(text: str) -> Iterator[Span]:
    """Each IBAN of a registered country, with its length and valid check digits."""
    for check_digits in _IBAN_HEAD.finditer(text):
        start = check_digits.start() - 2
        length = IBAN_LENGTHS.get(text[start : start + 2].upper())
        if length is None:
            continue
        body = _IBAN_BODIES[length - 4].match(text, check_digits.end())
        if body and iban_valid(compact(text[start : body.end()])):
            yield start, body.end()


def ip_spans(text: str) -> Iterator[Span]:
    """Each IPv4 and IPv6 address (the stdlib's ipaddress says which are valid)."""
    for match in _IPV4.finditer(text):
        if _parses(ipaddress.IPv4Address, match.group()):
            yield match.span()
    if not _IPV6_HINT.search(text):
        return
    for match in _IPV6.finditer(text):
        if _WORD_CHARACTER.match(text, match.end()):
            continue  # "fe80::1g" is a word, not an address
        candidate = _without_final_punctuation(match.group())
        if any(char not in ":." for char in candidate) and _parses(
            ipaddress.IPv6Address, candidate
        ):
            yield match.start(), match.start() + len(candidate)


def _without_final_punctuation(candidate: str) -> str:
    """The run without the full stop or colon of the sentence around it: "see ::1." is ::1."""
    candidate = candidate.rstrip(".")
    if candidate.endswith(":") and not candidate.endswith("::"):
        candidate = candidate[:-1]
    return candidate


def _parses(address_type: type[ipaddress.IPv4Address | ipaddress.IPv6Address], text: str) -> bool:
    try:
        address_type(text)
    except ValueError:
        return False
    return True


def compact(text: str) -> str:
    """Letters and digits only, upper case: the one spelling of a spaced IBAN or card number."""
    return "".join(char for char in text if char.isalnum()).upper()
