"""The intermediate form of the local model's JSON-schema compiler: grammar expressions, and
what the smallest and largest text each can produce costs.

A schema lowers (json_schema_lowering) into a graph of these expressions, cyclic only through
`Ref`; the writer (json_schema_gbnf) turns the graph into GBNF under a budget. Costs count the
UTF-8 bytes of the JSON text: a token is never shorter than one byte, so bytes bound tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INF = math.inf  # the cost of what no bound holds (or of what cannot be produced at all)
MAX_TEXT_BYTES = 4096  # one free string's content at most: more makes the grammar slow to load


class SchemaRefused(Exception):
    """A schema the compiler cannot enforce; its message is what the client reads."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# eq=False throughout: expressions are graph nodes, compared and hashed by identity.
@dataclass(eq=False)
class Expr:
    pass


@dataclass(eq=False)
class Lit(Expr):
    """Exactly this text (already JSON-encoded)."""

    text: str


@dataclass(eq=False)
class Chars(Expr):
    """One code point from `ranges` (inclusive pairs), all of UTF-8 width `width`."""

    ranges: tuple[tuple[int, int], ...]
    width: int


@dataclass(eq=False)
class Seq(Expr):
    items: list[Expr]


@dataclass(eq=False)
class Alt(Expr):
    options: list[Expr]


@dataclass(eq=False)
class Repeat(Expr):
    """`item` between `least` and `most` times (None: no bound), `sep` between two items."""

    item: Expr
    least: int
    most: int | None
    sep: Expr | None = None


@dataclass(eq=False)
class Text(Expr):
    """The content of a free JSON string: `least`..`most` characters, escapes allowed or not."""

    least: int
    most: int | None
    escapes: bool = True


@dataclass(eq=False)
class Ref(Expr):
    """A named node (a $ref target, a merged allOf); `target` is set once it is lowered."""

    label: str
    target: Expr | None = None


NEVER = Alt([])  # produces nothing: the `false` schema, an empty enum


def optional(expr: Expr) -> Repeat:
    return Repeat(expr, 0, 1)


def children(expr: Expr) -> list[Expr]:
    if isinstance(expr, Seq):
        return expr.items
    if isinstance(expr, Alt):
        return expr.options
    if isinstance(expr, Repeat):
        return [expr.item] if expr.sep is None else [expr.item, expr.sep]
    if isinstance(expr, Ref):
        return [expr.target] if expr.target is not None else []
    return []


@dataclass
class Costs:
    """Smallest and largest cost of every expression reachable from a root."""

    root: Expr
    low: dict[Expr, float] = field(default_factory=dict)
    high: dict[Expr, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for component in _components(self.root):
            self._settle(component)

    def min(self, expr: Expr) -> float:
        return self.low[expr]

    def max(self, expr: Expr) -> float:
        return self.high[expr]

    def _settle(self, component: list[Expr]) -> None:
        # Relaxation from INF, as Bellman-Ford: every round settles at least one more node of
        # the component (costs are monotone and never below their parts'), so n rounds do.
        for node in component:
            self.low[node] = INF
        for _ in range(len(component) + 1):
            changed = False
            for node in component:
                value = self._low_of(node)
                if value < self.low[node]:
                    self.low[node], changed = value, True
            if not changed:
                break
        cyclic = len(component) > 1 or component[0] in children(component[0])
        for node in component:
            self.high[node] = INF if cyclic else self._high_of(node)

    def _low_of(self, expr: Expr) -> float:
        low = self.low
        if isinstance(expr, Lit):
            return len(expr.text.encode())
        if isinstance(expr, Chars):
            return expr.width
        if isinstance(expr, Seq):
            return sum((low[item] for item in expr.items), 0)
        if isinstance(expr, Alt):
            return min((low[option] for option in expr.options), default=INF)
        if isinstance(expr, Repeat):
            if expr.least == 0:
                return 0
            sep = low[expr.sep] if expr.sep is not None else 0
            return expr.least * low[expr.item] + (expr.least - 1) * sep
        if isinstance(expr, Text):
            return expr.least
        assert isinstance(expr, Ref)
        return low[expr.target] if expr.target is not None else INF

    def _high_of(self, expr: Expr) -> float:
        low, high = self.low, self.high
        if isinstance(expr, Lit | Chars):
            return low[expr]
        if isinstance(expr, Seq):
            return sum((high[item] for item in expr.items), 0)
        if isinstance(expr, Alt):
            return max((high[o] for o in expr.options if low[o] < INF), default=0)
        if isinstance(expr, Repeat):
            if low[expr.item] == INF or expr.most == 0:
                return 0
            if expr.most is None:
                return INF
            sep = high[expr.sep] if expr.sep is not None else 0
            return expr.most * high[expr.item] + (expr.most - 1) * sep
        if isinstance(expr, Text):
            # What the writer may give it: four bytes a character while the count bounds it,
            # a byte-counted chain of at most MAX_TEXT_BYTES past that.
            if expr.most is not None and expr.most <= 2000:
                return 4 * expr.most
            return 4 * expr.least + MAX_TEXT_BYTES
        assert isinstance(expr, Ref)
        return high[expr.target] if expr.target is not None else 0


def _components(root: Expr) -> list[list[Expr]]:
    """Strongly connected components, each after every component it reaches (Tarjan's order),
    found without recursion: a deep schema must not exhaust Python's stack."""
    index: dict[Expr, int] = {}
    lowlink: dict[Expr, int] = {}
    on_stack: set[Expr] = set()
    stack: list[Expr] = []
    found: list[list[Expr]] = []
    work: list[tuple[Expr, int]] = [(root, 0)]
    while work:
        node, position = work.pop()
        if position == 0:
            index[node] = lowlink[node] = len(index)
            stack.append(node)
            on_stack.add(node)
        edges = children(node)
        if position < len(edges):
            work.append((node, position + 1))
            child = edges[position]
            if child not in index:
                work.append((child, 0))
            elif child in on_stack:
                lowlink[node] = min(lowlink[node], index[child])
            continue
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member is node:
                    break
            found.append(component)
        if work:
            parent = work[-1][0]
            lowlink[parent] = min(lowlink[parent], lowlink[node])
    return found
