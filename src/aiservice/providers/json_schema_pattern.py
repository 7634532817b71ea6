"""A string's `pattern` as grammar expressions, for the subset of regular expressions
llama.cpp's own converter handles.

That is: literal characters, classes (`[...]`, `.`, `\\d \\w \\s` and their negations), groups
(capturing, `(?:...)`, named), alternation, the quantifiers `? * + {m} {m,} {m,n}` (lazy or
not), and `^`/`$` at the ends. The grammar produces strings the whole expression matches; JSON
Schema asks only for a match somewhere, which each of them has. Anything else is refused.
"""

from __future__ import annotations

import re
from typing import Any

from aiservice.providers.json_schema_gbnf import MAX_REPEAT
from aiservice.providers.json_schema_ir import INF, NEVER, Alt, Expr, Repeat, SchemaRefused, Seq
from aiservice.providers.json_schema_scalars import Ranges, complement, json_chars, normalized

# ("chars", ranges) | ("seq", [node]) | ("alt", [node]) | ("rep", node, least, most or None)
Node = tuple[Any, ...]

# JSON Schema means ECMAScript's regular expressions; validators often run Python's. Where the
# two differ, a class escape is taken as what both match (`narrow`), and a class that negates
# it as excluding what either matches (`wide`), so both engines accept what the grammar writes.
_NON_ASCII: Ranges = [(0x80, 0x10FFFF)]
_DIGIT: Ranges = [(0x30, 0x39)]
_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE_BOTH: Ranges = normalized(
    [
        *((0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)),
        *((0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)),
    ]
)
_SPACE_EITHER: Ranges = normalized([*_SPACE_BOTH, (0x1C, 0x1F), (0x85, 0x85), (0xFEFF, 0xFEFF)])
# escape letter -> (narrow, wide); the upper-case letter is the complement of the other's.
_CLASS_ESCAPES: dict[str, tuple[Ranges, Ranges]] = {
    "d": (_DIGIT, normalized([*_DIGIT, *_NON_ASCII])),
    "w": (_WORD, normalized([*_WORD, *_NON_ASCII])),
    "s": (_SPACE_BOTH, _SPACE_EITHER),
}
_LINE_ENDS: Ranges = [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]
_CHAR_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "v": 0x0B}
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")
_MAX_GROUP_DEPTH = 32


def pattern_node(pattern: str, where: str) -> Node:
    return _Parser(pattern, where).parse()


def pattern_expr(node: Node) -> Expr:
    """The JSON string content (escaped as JSON needs) of what `node` matches."""
    kind = node[0]
    if kind == "chars":
        return json_chars(node[1]) if node[1] else NEVER
    if kind == "seq":
        return Seq([pattern_expr(item) for item in node[1]])
    if kind == "alt":
        return Alt([pattern_expr(option) for option in node[1]])
    most = node[3] if node[3] is None else min(node[3], MAX_REPEAT)
    return Repeat(pattern_expr(node[1]), node[2], most)


def pattern_length(node: Node) -> tuple[float, float]:
    """The fewest and most characters `node` matches (INF: no bound)."""
    kind = node[0]
    if kind == "chars":
        return (1, 1)
    if kind == "seq":
        lengths = [pattern_length(item) for item in node[1]]
        return (sum(low for low, _ in lengths), sum(high for _, high in lengths))
    if kind == "alt":
        lengths = [pattern_length(option) for option in node[1]]
        return (min(low for low, _ in lengths), max(high for _, high in lengths))
    low, high = pattern_length(node[1])
    most = INF if node[3] is None else node[3]
    return (node[2] * low, most * high if high else 0)


def within_length(node: Node, least: int, most: float) -> Node | None:
    """`node` held to least..most characters, or None if that takes more than bounding its one
    variable run of single characters (as in `^[a-z]+$` with a maxLength)."""
    low, high = pattern_length(node)
    if least <= low and high <= most:
        return node
    items = list(node[1]) if node[0] == "seq" else [node]
    variable = [i for i, item in enumerate(items) if len(set(pattern_length(item))) > 1]
    if len(variable) != 1:
        return None
    run = items[variable[0]]
    if run[0] != "rep" or pattern_length(run[1]) != (1, 1):
        return None
    fixed = low - run[2]
    run_least = max(run[2], least - fixed)
    run_most = most - fixed if run[3] is None else min(run[3], most - fixed)
    if run_least > run_most:
        return None
    items[variable[0]] = ("rep", run[1], int(run_least), None if run_most == INF else int(run_most))
    return ("seq", items)


class _Parser:
    def __init__(self, text: str, where: str):
        self.text = text
        self.where = where
        self.pos = 0
        self.depth = 0

    def refuse(self, what: str) -> SchemaRefused:
        return SchemaRefused(
            f"Unsupported regular expression in 'pattern' at {self.where}: {what} "
            f"(position {self.pos})"
        )

    def parse(self) -> Node:
        node = self.alternation()
        if self.pos < len(self.text):
            raise self.refuse("unbalanced ')'")
        return node

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else ("alt", options)

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.pos < len(self.text) and self.text[self.pos] not in "|)":
            atom = self.atom(at_start=not items)
            if atom is not None:
                items.append(self.quantified(atom))
        return ("seq", items)

    def atom(self, at_start: bool) -> Node | None:
        text, char = self.text, self.text[self.pos]
        if char in "^$":
            # Only at the very ends (or of a top-level alternative): elsewhere an anchor makes
            # the strings the grammar writes fail the expression.
            following = text[self.pos + 1 : self.pos + 2]
            if self.depth == 0 and (at_start if char == "^" else following in ("", "|")):
                self.pos += 1
                return None
            raise self.refuse(f"'{char}' inside the expression")
        if char == "(":
            return self.group()
        if char == "[":
            return self.char_class()
        if char in "*+?" or (char == "{" and _QUANTIFIER.match(text, self.pos)):
            raise self.refuse("a quantifier with nothing to repeat")
        self.pos += 1
        if char == ".":
            return ("chars", complement(_LINE_ENDS))
        if char == "\\":
            return ("chars", self.escape(in_class=False)[0])
        return ("chars", [(ord(char), ord(char))])

    def group(self) -> Node:
        self.pos += 1
        if self.text.startswith("?", self.pos):
            named = re.match(r"\?<[A-Za-z_][A-Za-z0-9_]*>", self.text[self.pos :])
            if self.text.startswith("?:", self.pos):
                self.pos += 2
            elif named:
                self.pos += named.end()
            else:
                raise self.refuse("a lookaround or group modifier '(?'")
        self.depth += 1
        if self.depth > _MAX_GROUP_DEPTH:
            raise self.refuse(f"groups nested deeper than {_MAX_GROUP_DEPTH}")
        node = self.alternation()
        if not self.text.startswith(")", self.pos):
            raise self.refuse("an unclosed group")
        self.pos += 1
        self.depth -= 1
        return node

    def quantified(self, atom: Node) -> Node:
        text = self.text
        if self.pos >= len(text):
            return atom
        char = text[self.pos]
        if char in "?*+":
            self.pos += 1
            least, most = {"?": (0, 1), "*": (0, None), "+": (1, None)}[char]
        elif (found := _QUANTIFIER.match(text, self.pos)) is not None:
            self.pos = found.end()
            least = int(found.group(1))
            most = (
                least if found.group(2) is None else int(found.group(3)) if found.group(3) else None
            )
            if most is not None and most < least:
                raise self.refuse("a quantifier {m,n} with n < m")
            if least > MAX_REPEAT:
                raise self.refuse(f"a repetition of more than {MAX_REPEAT}")
        else:
            return atom
        if text.startswith("?", self.pos):  # lazy: the same strings match
            self.pos += 1
        if self.pos < len(text) and (text[self.pos] in "*+?" or _QUANTIFIER.match(text, self.pos)):
            raise self.refuse("a quantifier after a quantifier")
        return ("rep", atom, least, most)

    def char_class(self) -> Node:
        self.pos += 1
        negated = self.text.startswith("^", self.pos)
        self.pos += negated
        ranges: Ranges = []
        # As in JavaScript, `[]` matches nothing and `[^]` anything.
        while not self.text.startswith("]", self.pos):
            if self.pos >= len(self.text):
                raise self.refuse("an unclosed '['")
            low = self.class_item()
            dash = self.text.startswith("-", self.pos)
            if dash and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                ranges.append(self.class_range(low[0], self.class_item()[0]))
            else:
                ranges += low[1] if negated else low[0]
        self.pos += 1
        ranges = normalized(ranges)
        return ("chars", complement(ranges) if negated else ranges)

    def class_range(self, low: Ranges, high: Ranges) -> tuple[int, int]:
        if not (_single(low) and _single(high)):
            raise self.refuse("a range between classes")
        if high[0][0] < low[0][0]:
            raise self.refuse("a range out of order")
        return (low[0][0], high[0][0])

    def class_item(self) -> tuple[Ranges, Ranges]:
        char = self.text[self.pos]
        self.pos += 1
        if char == "\\":
            return self.escape(in_class=True)
        return _one(ord(char))

    def escape(self, in_class: bool) -> tuple[Ranges, Ranges]:
        """What `\\x` stands for, (narrow, wide); self.pos is just past the backslash."""
        if self.pos >= len(self.text):
            raise self.refuse("a trailing backslash")
        char = self.text[self.pos]
        self.pos += 1
        if char.lower() in _CLASS_ESCAPES:
            narrow, wide = _CLASS_ESCAPES[char.lower()]
            return (complement(wide), complement(narrow)) if char.isupper() else (narrow, wide)
        if char in _CHAR_ESCAPES:
            return _one(_CHAR_ESCAPES[char])
        if char == "b" and in_class:
            return _one(0x08)
        if char in "xu":
            return _one(self.hex_escape(char))
        if char == "0" and not self.text[self.pos : self.pos + 1].isdigit():
            return _one(0)
        if char.isascii() and char.isalnum():
            what = {"b": "a word boundary", "B": "a word boundary", "k": "a back reference"}
            described = "a back reference" if char.isdigit() else what.get(char)
            raise self.refuse(described or f"the escape '\\{char}'")
        return _one(ord(char))

    def hex_escape(self, kind: str) -> int:
        text, pos = self.text, self.pos
        if kind == "u" and text.startswith("{", pos):
            found = re.match(r"\{([0-9A-Fa-f]{1,6})\}", text[pos:])
        else:
            found = re.match(f"[0-9A-Fa-f]{{{2 if kind == 'x' else 4}}}", text[pos:])
        if found is None:
            raise self.refuse(f"a malformed '\\{kind}' escape")
        self.pos += found.end()
        point = int(found.group(1) if found.groups() else found.group(0), 16)
        if point > 0x10FFFF:
            raise self.refuse(f"the code point {point:X}")
        return point


def _one(point: int) -> tuple[Ranges, Ranges]:
    return ([(point, point)], [(point, point)])


def _single(ranges: Ranges) -> bool:
    return len(ranges) == 1 and ranges[0][0] == ranges[0][1]
