"""Expressions for JSON scalars: string characters, integers and numbers within bounds, and
the string formats a grammar can spell out (date, time, date-time, uuid).

Everything here produces a subset of what the schema allows, never more: a number never takes
an exponent, a fraction never ends in 0, a date never falls on 29 February, a time never on a
leap second, a uuid is lower case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from aiservice.providers.json_schema_ir import NEVER, Alt, Chars, Expr, Lit, Repeat, Seq, optional

Ranges = list[tuple[int, int]]

MAX_DIGITS = 15  # an integer part with no bound on that side has at most this many digits
MAX_FRACTION_DIGITS = 15
_WIDTHS = ((0x0000, 0x007F, 1), (0x0080, 0x07FF, 2), (0x0800, 0xFFFF, 3), (0x10000, 0x10FFFF, 4))
_SURROGATES = [(0xD800, 0xDFFF)]
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


# --- code point ranges -------------------------------------------------------------------------


def normalized(ranges: Iterable[tuple[int, int]]) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(r for r in ranges if r[0] <= r[1]):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for low, high in normalized(ranges):
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= 0x10FFFF:
        gaps.append((start, 0x10FFFF))
    return gaps


def subtract(ranges: Ranges, removed: Ranges) -> Ranges:
    return intersect(ranges, complement(removed))


def intersect(first: Ranges, second: Ranges) -> Ranges:
    out = []
    for low, high in normalized(first):
        for other_low, other_high in normalized(second):
            if max(low, other_low) <= min(high, other_high):
                out.append((max(low, other_low), min(high, other_high)))
    return normalized(out)


def contains(ranges: Ranges, point: int) -> bool:
    return any(low <= point <= high for low, high in ranges)


def json_chars(ranges: Ranges) -> Expr:
    """One character of a JSON string whose value is in `ranges`, as JSON writes it: raw when
    it may be, an escape for `"`, `\\` and the controls that have a short one. DEL and the other
    controls are left out."""
    raw = subtract(ranges, [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F), *_SURROGATES])
    options: list[Expr] = []
    for low, high, width in _WIDTHS:
        part = intersect(raw, [(low, high)])
        if part:
            options.append(Chars(tuple(part), width))
    for point, escape in (*_SHORT_ESCAPES.items(), (0x22, '\\"'), (0x5C, "\\\\")):
        if contains(ranges, point):
            options.append(Lit(escape))
    return options[0] if len(options) == 1 else Alt(options)


# --- integers and numbers ----------------------------------------------------------------------


def _digits(low: int, high: int) -> Chars:
    return Chars(((ord("0") + low, ord("0") + high),), 1)


def _same_length(low: str, high: str) -> list[list[tuple[int, int]]]:
    """Digit patterns (a (low, high) pair a position) covering low..high, both `n` digits."""
    if not low:
        return [[]]
    first, last = int(low[0]), int(high[0])
    if first == last:
        return [[(first, first), *rest] for rest in _same_length(low[1:], high[1:])]
    n = len(low) - 1
    patterns = []
    start, end = first, last
    if low[1:] != "0" * n:
        patterns += [[(first, first), *rest] for rest in _same_length(low[1:], "9" * n)]
        start += 1
    tail = [] if high[1:] == "9" * n else _same_length("0" * n, high[1:])
    if tail:
        end -= 1
    if start <= end:
        patterns.append([(start, end)] + [(0, 9)] * n)
    return patterns + [[(last, last), *rest] for rest in tail]


def natural_range(low: int, high: int) -> Expr:
    """The decimal numerals (no leading zero) of the integers low..high, 0 <= low."""
    options: list[Expr] = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = min(high, 10**length - 1)
        if start > end:
            continue
        for pattern in _same_length(str(start), str(end)):
            options.append(_pattern_expr(pattern))
    return NEVER if not options else options[0] if len(options) == 1 else Alt(options)


def _pattern_expr(pattern: list[tuple[int, int]]) -> Expr:
    items: list[Expr] = []
    i = 0
    while i < len(pattern):
        j = i
        while j < len(pattern) and pattern[j] == pattern[i]:
            j += 1
        digit = _digits(*pattern[i])
        items.append(digit if j - i == 1 else Repeat(digit, j - i, j - i))
        i = j
    return items[0] if len(items) == 1 else Seq(items)


def _open_end(start: int) -> int:
    """Where the integers from `start` stop when no bound says: MAX_DIGITS digits, or as many
    as `start` has."""
    return max(10**MAX_DIGITS - 1, 10 ** len(str(start)) - 1)


def integer_range(low: int | None, high: int | None) -> Expr:
    """The integers low..high (None: unbounded, up to MAX_DIGITS digits)."""
    options: list[Expr] = []
    if high is None or high >= 0:
        start = max(low, 0) if low is not None else 0
        end = high if high is not None else _open_end(start)
        if start <= end:
            options.append(natural_range(start, end))
    if low is None or low < 0:
        start = max(-high, 1) if high is not None else 1
        end = -low if low is not None else _open_end(start)
        if start <= end:
            options.append(Seq([Lit("-"), natural_range(start, end)]))
    return NEVER if not options else options[0] if len(options) == 1 else Alt(options)


def _fraction() -> Expr:
    # Never ends in 0, so the value lies strictly between the integer part and the next one.
    return Seq([Lit("."), Repeat(_digits(0, 9), 0, MAX_FRACTION_DIGITS - 1), _digits(1, 9)])


def integer_expr(schema: dict) -> Expr:
    low, high, low_open, high_open = bounds(schema)
    first = None if low is None else math.floor(low) + 1 if low_open else math.ceil(low)
    last = None if high is None else math.ceil(high) - 1 if high_open else math.floor(high)
    if first is not None and last is not None and first > last:
        return NEVER
    return integer_range(first, last)


def number_expr(schema: dict) -> Expr:
    low, high, _, _ = bounds(schema)
    if low is None and high is None:
        return Seq([integer_range(None, None), optional(_fraction())])
    whole = integer_expr(schema)
    options = [] if whole is NEVER else [whole]
    # x = i.f lies in (i, i+1) for i >= 0 and in (-(i+1), -i) for -i.f: allowed when all of that
    # open interval is, which holds for open and closed bounds alike.
    first = 0 if low is None else max(0, math.ceil(low))
    last = None if high is None else math.floor(high) - 1
    if last is None or first <= last:
        options.append(Seq([integer_range(first, last), _fraction()]))
    first = 0 if high is None else max(0, math.ceil(-high))
    last = None if low is None else math.floor(-low) - 1
    if last is None or first <= last:
        options.append(Seq([Lit("-"), integer_range(first, last), _fraction()]))
    return NEVER if not options else options[0] if len(options) == 1 else Alt(options)


def bounds(schema: dict) -> tuple[float | None, float | None, bool, bool]:
    """(low, high, low is exclusive, high is exclusive), from draft-4 or later keywords."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open = high_open = False
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if exclusive_low is True:
        low_open = low is not None
    elif _is_number(exclusive_low) and (low is None or exclusive_low >= low):
        low, low_open = exclusive_low, True
    if exclusive_high is True:
        high_open = high is not None
    elif _is_number(exclusive_high) and (high is None or exclusive_high <= high):
        high, high_open = exclusive_high, True
    return low, high, low_open, high_open


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- formats -----------------------------------------------------------------------------------


def _two(*numbers: str) -> Expr:
    return Alt([Lit(number) for number in numbers])


def _date() -> Expr:
    digit = _digits(0, 9)
    year = Seq([_digits(1, 9), Repeat(digit, 3, 3)])
    days_to_31 = Alt(
        [Seq([Lit("0"), _digits(1, 9)]), Seq([_digits(1, 2), digit]), _two("30", "31")]
    )
    days_to_30 = Alt([Seq([Lit("0"), _digits(1, 9)]), Seq([_digits(1, 2), digit]), Lit("30")])
    days_to_28 = Alt(
        [Seq([Lit("0"), _digits(1, 9)]), Seq([Lit("1"), digit]), Seq([Lit("2"), _digits(0, 8)])]
    )
    month_day = Alt(
        [
            Seq([_two("01", "03", "05", "07", "08", "10", "12"), Lit("-"), days_to_31]),
            Seq([_two("04", "06", "09", "11"), Lit("-"), days_to_30]),
            Seq([Lit("02-"), days_to_28]),
        ]
    )
    return Seq([year, Lit("-"), month_day])


def _time() -> Expr:
    digit = _digits(0, 9)
    hour = Alt([Seq([_digits(0, 1), digit]), Seq([Lit("2"), _digits(0, 3)])])
    sixty = Seq([_digits(0, 5), digit])
    fraction = optional(Seq([Lit("."), Repeat(digit, 1, 6)]))
    offset = Alt([Lit("Z"), Seq([Chars(((0x2B, 0x2B), (0x2D, 0x2D)), 1), hour, Lit(":"), sixty])])
    return Seq([hour, Lit(":"), sixty, Lit(":"), sixty, fraction, offset])


def _uuid() -> Expr:
    hex_digit = Chars(((0x30, 0x39), (0x61, 0x66)), 1)
    groups = [Repeat(hex_digit, n, n) for n in (8, 4, 4, 4, 12)]
    items: list[Expr] = [groups[0]]
    for group in groups[1:]:
        items += [Lit("-"), group]
    return Seq(items)


# (content, its length in characters): every one of these formats is ASCII of bounded length.
FORMATS = {
    "date": (_date, (10, 10)),
    "time": (_time, (9, 21)),
    "date-time": (lambda: Seq([_date(), Lit("T"), _time()]), (20, 32)),
    "uuid": (_uuid, (36, 36)),
}
