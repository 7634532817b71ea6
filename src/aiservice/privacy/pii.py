"""Personal data in a text: where each e-mail address, phone number, IBAN, card number and IP
address is, one finding per place however many detectors saw it."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from aiservice.privacy.cards import card_spans
from aiservice.privacy.patterns import compact, email_spans, iban_spans, ip_spans
from aiservice.privacy.phones import canonical_phone, phone_spans


class PiiKind(StrEnum):
    """What a finding is; the order is specificity, and the more specific wins an overlap."""

    EMAIL = "EMAIL"  # an address, digits and all: "0612345678@sms.fr" is no phone number
    IBAN = "IBAN"  # country length and mod-97 check digits
    CARD = "CARD"  # a network's first digit, card grouping and the Luhn check
    IP = "IP"  # IPv4 or IPv6, as the stdlib's ipaddress parses it
    PHONE = "PHONE"  # the most permissive detector, so it yields to every other


_SPECIFICITY = {kind: rank for rank, kind in enumerate(PiiKind)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: its kind and where it is (`text[start:end]`)."""

    kind: PiiKind
    start: int
    end: int
    text: str = field(repr=False)  # kept out of repr so a logged finding never leaks it


def find_pii(text: str, default_region: str = "FR") -> list[Finding]:
    """Every finding in `text`, in order, none overlapping another; `default_region` is the
    country whose national phone numbers (written without +) are recognised."""
    specific = _without_overlaps(
        [
            *_found(PiiKind.EMAIL, text, email_spans(text)),
            *_found(PiiKind.IBAN, text, iban_spans(text)),
            *_found(PiiKind.CARD, text, card_spans(text)),
            *_found(PiiKind.IP, text, ip_spans(text)),
        ]
    )
    # The phone matcher, the slowest detector and the least specific, never sees what the others
    # found: parsing an IBAN's or a card's digit groups as phone numbers would only cost time.
    blanked = spliced(text, [(f.start, f.end, " " * (f.end - f.start)) for f in specific])
    phones = phone_spans(blanked, default_region)
    return _without_overlaps([*specific, *_found(PiiKind.PHONE, text, phones)])


def spliced(text: str, replacements: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end) slice, in order and none overlapping, replaced."""
    pieces, position = [], 0
    for start, end, replacement in replacements:
        pieces += [text[position:start], replacement]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _found(kind: PiiKind, text: str, spans: Iterable[tuple[int, int]]) -> list[Finding]:
    return [Finding(kind, start, end, text[start:end]) for start, end in spans]


def _without_overlaps(candidates: list[Finding]) -> list[Finding]:
    """The candidates kept by rank: most specific kind first, then the longest, then the
    earliest; each one that overlaps a finding already kept is dropped."""
    ranked = sorted(candidates, key=lambda f: (_SPECIFICITY[f.kind], f.start - f.end, f.start))
    kept: list[Finding] = []
    starts: list[int] = []
    for finding in ranked:
        place = bisect.bisect(starts, finding.start)
        if place and kept[place - 1].end > finding.start:
            continue
        if place < len(kept) and kept[place].start < finding.end:
            continue
        kept.insert(place, finding)
        starts.insert(place, finding.start)
    return kept


def canonical_value(finding: Finding, default_region: str = "FR") -> str:
    """One spelling per value, whatever the formatting: what makes two findings the same datum
    (upper-case IBAN without spaces, E.164 phone number, compressed IPv6...)."""
    if finding.kind is PiiKind.EMAIL:
        return finding.text.lower()
    if finding.kind is PiiKind.PHONE:
        return canonical_phone(finding.text, default_region)
    if finding.kind is PiiKind.IP:
        return str(ipaddress.ip_address(finding.text))
    return compact(finding.text)
