"""GBNF text from the compiler's intermediate form, under a byte budget.

`GrammarWriter.grammar(root, budget)` writes a grammar whose every sentence costs at most
`budget` bytes: a sequence shares its budget among its parts (each first gets its minimum, what
is left is shared out evenly, no part getting more than it can use), a choice gives each option
the whole budget, a repetition picks how many items of what size fit, and a free string's
content is a chain of rules that counts the bytes its characters take. Every rule is written
for one (expression, budget) pair, so a recursive schema unrolls into rules of ever smaller
budgets and stops where no room is left: the budget bounds the depth.
"""

from __future__ import annotations

import re

from aiservice.providers.json_schema_ir import (
    INF,
    MAX_TEXT_BYTES,
    Alt,
    Chars,
    Costs,
    Expr,
    Lit,
    Ref,
    Repeat,
    Seq,
    Text,
)

# llama.cpp's parser silently drops a repetition bound above 2000 (x{0,5000} becomes x*).
MAX_REPEAT = 2000
# An unbounded list gets room for about this many items of equal size; fewer if they are big.
TARGET_ITEMS = 8
# Named nodes ($ref targets) nested deeper than this are not written: it bounds the grammar's
# size (and Python's stack) when the budget alone would allow hundreds of levels.
MAX_REF_DEPTH = 32

_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_SYMBOL = re.compile(r'[A-Za-z0-9-]+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')

# The characters of a JSON string, by the bytes they take in UTF-8. No raw control character
# (U+0000-U+001F), no DEL, no lone surrogate; escapes only the two-character ones JSON defines.
_BASE_RULES = {
    "json-plain": r"[\x20-\x21\x23-\x5B\x5D-\x7E]",
    "json-two": r'"\\" [\x22\x5C/bfnrt] | [\u0080-\u07FF]',
    "json-two-raw": r"[\u0080-\u07FF]",
    "json-three": r"[\u0800-\uD7FF\uE000-\uFFFF]",
    "json-four": r"[\U00010000-\U0010FFFF]",
    "json-char": "json-plain | json-two | json-three | json-four",
    "json-key-char": "json-plain | json-two-raw | json-three | json-four",
}


class GrammarWriter:
    def __init__(self, costs: Costs):
        self._costs = costs
        self._rules: dict[str, str] = {}
        self._names: dict[str, str] = {}  # rule body -> name
        self._memo: dict[tuple[Expr, int], str | None] = {}
        self._active: set[tuple[Expr, int]] = set()
        self._chain_length = {True: 0, False: 0}  # the longest chain used, with escapes or not
        self._depth = 0
        self._count = 0

    def grammar(self, root: Expr, budget: int) -> str | None:
        """The grammar, or None when the root cannot be written within MAX_REF_DEPTH."""
        body = self.emit(root, budget, "doc")
        if body is None:
            return None
        lines = [f"root ::= {body}"]
        lines += [f"{name} ::= {rule}" for name, rule in self._rules.items()]
        lines += self._chain_rules()
        lines += [f"{name} ::= {rule}" for name, rule in _BASE_RULES.items()]
        return "\n".join(lines) + "\n"

    def emit(self, expr: Expr, budget: int, label: str) -> str | None:
        """GBNF for what `expr` produces within `budget` bytes; None if nothing fits."""
        if self._costs.min(expr) > budget:
            return None
        budget = int(min(budget, self._costs.max(expr)))
        key = (expr, budget)
        if key in self._memo:
            return self._memo[key]
        if key in self._active:  # a cycle that consumed nothing: it adds no sentence
            return None
        self._active.add(key)
        try:
            text = self._write(expr, budget, label)
        finally:
            self._active.discard(key)
        self._memo[key] = text
        return text

    def _write(self, expr: Expr, budget: int, label: str) -> str | None:
        if isinstance(expr, Lit):
            return literal(expr.text)
        if isinstance(expr, Chars):
            return char_class(expr.ranges)
        if isinstance(expr, Seq):
            return self._sequence(expr, budget, label)
        if isinstance(expr, Alt):
            options = [self.emit(option, budget, label) for option in expr.options]
            written = list(dict.fromkeys(o for o in options if o is not None))
            if len(written) <= 1:
                return written[0] if written else None
            return self._rule(label, " | ".join(written))
        if isinstance(expr, Repeat):
            return self._repeat(expr, budget, label)
        if isinstance(expr, Text):
            return self._text(expr, budget)
        assert isinstance(expr, Ref) and expr.target is not None
        if self._depth >= MAX_REF_DEPTH:
            return None
        self._depth += 1
        try:
            body = self.emit(expr.target, budget, expr.label)
        finally:
            self._depth -= 1
        return None if body is None else self._rule(expr.label, body)

    def _sequence(self, expr: Seq, budget: int, label: str) -> str | None:
        pieces = []
        for item, share in zip(expr.items, self._share(expr.items, budget), strict=True):
            text = self.emit(item, share, label)
            if text is None:
                return None
            if text == '""':
                continue
            if pieces and _LITERAL.fullmatch(pieces[-1]) and _LITERAL.fullmatch(text):
                text = pieces.pop()[:-1] + text[1:]  # "a" "b" is "ab": a shorter grammar
            pieces.append(text)
        return " ".join(pieces) or '""'

    def _share(self, items: list[Expr], budget: int) -> list[int]:
        """Each item's budget: its minimum, then an even share of the rest (water-filling), no
        item getting more than its maximum; an optional part shows only once it can fit."""
        lows = [int(self._costs.min(item)) for item in items]
        rooms = [self._costs.max(item) - low for item, low in zip(items, lows, strict=True)]
        thresholds = [self._threshold(item) for item in items]
        slack = budget - sum(lows)

        def extra(level: int) -> list[float]:
            return [
                0 if level < threshold else min(room, level)
                for threshold, room in zip(thresholds, rooms, strict=True)
            ]

        low, high = 0, slack
        while low < high:
            middle = (low + high + 1) // 2
            if sum(extra(middle)) <= slack:
                low = middle
            else:
                high = middle - 1
        given = extra(low)
        left = slack - sum(given)
        for i, room in enumerate(rooms):
            more = min(room - given[i], left)
            if more <= 0 or (given[i] == 0 and more < thresholds[i]):
                continue
            given[i] += more
            left -= more
        return [low + int(more) for low, more in zip(lows, given, strict=True)]

    def _threshold(self, item: Expr) -> float:
        if isinstance(item, Repeat) and item.least == 0:
            return self._costs.min(item.item)
        return 0

    def _repeat(self, expr: Repeat, budget: int, label: str) -> str | None:
        least, costs = expr.least, self._costs
        most = MAX_REPEAT if expr.most is None else min(expr.most, MAX_REPEAT)
        item_low, item_high = costs.min(expr.item), costs.max(expr.item)
        if most == 0 or item_low == INF:
            return '""' if least == 0 else None
        sep_text, sep = "", 0
        if expr.sep is not None:
            sep = int(costs.max(expr.sep))
            if least and least * item_low + (least - 1) * sep > budget:
                sep = int(costs.min(expr.sep))
            sep_text = self.emit(expr.sep, sep, label) or '""'
        target = max(least, min(TARGET_ITEMS, most))
        size = int(max(item_low, min(item_high, (budget + sep) // target - sep)))
        count = min(most, (budget + sep) // (size + sep)) if size + sep else most
        if count < least:
            size, count = int(min(item_high, (budget + sep) // least - sep)), least
        item = self.emit(expr.item, size, label) if count else None
        if item is None:
            return '""' if least == 0 else None
        item = self._symbol(item, label)
        if sep_text in ("", '""'):
            return repetition(item, least, count)
        unit = self._symbol(f"{sep_text} {item}", label)
        body = f"{item} {repetition(unit, max(least - 1, 0), count - 1)}".strip()
        if least:
            return body
        return f"{body}?" if body == item else f"({body})?"

    def _text(self, expr: Text, budget: int) -> str:
        """A free string's content in at most `budget` bytes (a character takes one to four;
        an escape two)."""
        char = "json-char" if expr.escapes else "json-key-char"
        least, most = expr.least, expr.most
        if most is not None and most <= MAX_REPEAT and 4 * most <= budget:
            return repetition(char, least, most) or '""'
        prefix, used = "", 0
        if least:
            # The characters the schema demands, of any width if the budget allows, else of one
            # byte; the chain then counts what is left.
            char_of_prefix, used = (
                (char, 4 * least) if 4 * least <= budget else ("json-plain", least)
            )
            prefix = repetition(char_of_prefix, least, least)
        rest = min(budget - used, MAX_TEXT_BYTES)
        if most is not None:
            rest = min(rest, most - least)
        chain = self._chain(rest, expr.escapes)
        return " ".join(piece for piece in (prefix, chain) if piece) or '""'

    def _chain(self, length: int, escapes: bool) -> str:
        if length <= 0:
            return ""
        self._chain_length[escapes] = max(self._chain_length[escapes], length)
        return _chain_name(length, escapes)

    def _chain_rules(self) -> list[str]:
        # chain-k: any string content of at most k bytes, as a choice of the next character by
        # its width w followed by chain-(k-w). Written out rather than as x{0,k}, which llama.cpp
        # cannot bound past 2000 and which counts characters, not bytes.
        lines = []
        for escapes, length in self._chain_length.items():
            wide = "json-two" if escapes else "json-two-raw"
            for k in range(1, length + 1):
                options = []
                for width, char in ((1, "json-plain"), (2, wide), (3, "json-three")):
                    if k >= width:
                        options.append(f"{char} {_chain_name(k - width, escapes)}".strip())
                if k >= 4:
                    options.append(f"json-four {_chain_name(k - 4, escapes)}".strip())
                lines.append(f"{_chain_name(k, escapes)} ::= ({' | '.join(options)})?")
        return lines

    def _rule(self, label: str, body: str) -> str:
        if body in self._names:  # the same text from another node, or at another budget
            return self._names[body]
        self._count += 1
        name = f"{label}-{self._count}"
        self._rules[name] = body
        self._names[body] = name
        return name

    def _symbol(self, text: str, label: str) -> str:
        """`text` as one GBNF symbol (to repeat or make optional): a rule of its own if need be."""
        return text if _SYMBOL.fullmatch(text) else self._rule(label, text)


def _chain_name(length: int, escapes: bool) -> str:
    if length <= 0:
        return ""
    return f"json-{'str' if escapes else 'key'}-{length}"


def repetition(symbol: str, least: int, most: int) -> str:
    if most <= 0:
        return ""
    if least == 0 and most == 1:
        return f"{symbol}?"
    if least == most:
        return symbol if most == 1 else f"{symbol}{{{most}}}"
    return f"{symbol}{{{least},{most}}}"


def literal(text: str) -> str:
    return '"' + "".join(_literal_char(char) for char in text) + '"'


def _literal_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    return char if " " <= char <= "~" else _escape(ord(char))


def char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    parts = [
        _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}"
        for low, high in ranges
    ]
    return "[" + "".join(parts) + "]"


def _class_char(point: int) -> str:
    char = chr(point)
    return char if char.isascii() and char.isalnum() else _escape(point)


def _escape(point: int) -> str:
    if point < 0x100:
        return f"\\x{point:02X}"
    if point < 0x10000:
        return f"\\u{point:04X}"
    return f"\\U{point:08X}"
