"""Reading the GBNF the schema compiler writes, independently of it: a small parser for the
grammar text, a random sampler over exactly the sentences it allows, the longest sentence's
length, and llama.cpp's own verdict on a text (through its grammar sampler); and `check`, which
puts a schema's grammar through all of them.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import random
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jsonschema
import llama_cpp
from llama_cpp import Llama

from aiservice.providers.json_schema_grammar import compile_schema

PARAM = "response_format.json_schema.schema"
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # jsonschema checks date-time and time only with an optional package; RFC 3339 as Python
    # reads it (an offset is required).
    if isinstance(value, str):
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value[10] == "T" and moment.tzinfo is not None
    return True


@FORMATS.checks("time", raises=ValueError)
def _is_time(value: object) -> bool:
    return _is_date_time("1970-01-01T" + value) if isinstance(value, str) else True


def draw(grammar: str, count: int, seed: int = 0) -> list[str]:
    """`count` random documents of the grammar, from short to long, and its longest one."""
    parsed = Grammar.parse(grammar)
    rng = random.Random(seed)
    eagerness = [0.2, 0.5, 0.8, 0.95]
    return [parsed.sample(rng, eagerness[i % 4]) for i in range(count)] + [parsed.longest()]


def check(schema: Any, budget: int, *, count: int = 120, grammar: str | None = None) -> list[Any]:
    """Compile `schema` (unless `grammar` is given) and check what it allows; the documents."""
    grammar = grammar or compile_schema(schema, budget=budget, param=PARAM)
    assert llama_accepts_grammar(grammar)
    assert Grammar.parse(grammar).longest_size <= budget - 1
    texts = draw(grammar, count, seed=budget)
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=FORMATS)
    documents = []
    for text in texts:
        assert not any(ord(char) < 0x20 or char == "\x7f" for char in text), text
        document = json.loads(text)
        error = next(validator.iter_errors(document), None)
        assert error is None, (text, error.message if error else None)
        documents.append(document)
    writable = [text for text in texts if tokenizable(text)]
    for text in writable[:6] + writable[-2:]:
        assert llama_allows(grammar, text), text
    return documents


def refused_by_grammar(schema: Any, budget: int, texts: list[str]) -> None:
    grammar = compile_schema(schema, budget=budget, param=PARAM)
    for text in texts:
        assert not llama_allows(grammar, text), text


# (kind, ...): ("alt", [seq]), ("seq", [node]), ("lit", text), ("cls", ranges, negated),
# ("ref", name), ("rep", node, least, most)
Node = tuple[Any, ...]
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


@dataclass
class Grammar:
    rules: dict[str, Node]
    sizes: dict[str, int] = field(default_factory=dict)  # a rule's longest sentence, in bytes

    @classmethod
    def parse(cls, text: str) -> Grammar:
        rules = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            name, _, body = line.partition(" ::= ")
            reader = _Reader(body)
            rules[name] = reader.alternation()
            assert reader.pos == len(body), (line, reader.pos)
        grammar = cls(rules)
        for name in _dependencies_first(rules):
            grammar.sizes[name] = grammar._size(rules[name])
        return grammar

    def sample(self, rng: random.Random, eagerness: float = 0.5) -> str:
        """A random sentence; `eagerness`: how likely an optional part is taken (long strings
        and lists need a high one)."""

        def choose(node: Node) -> list[Node]:
            kind = node[0]
            if kind == "alt":
                return [rng.choice(node[1])]
            if kind == "cls":
                assert not node[2], "the compiler writes no negated class"
                low, high = rng.choice(node[1])
                return [("lit", chr(rng.randint(low, high)))]
            if (node[2], node[3]) == (0, 1):
                return [node[1]] * int(rng.random() < eagerness)
            return [node[1]] * rng.randint(node[2], node[3])

        return self._expand(choose)

    @property
    def longest_size(self) -> int:
        return self.sizes["root"]

    def longest(self) -> str:
        """A sentence of the most UTF-8 bytes the grammar allows."""

        def choose(node: Node) -> list[Node]:
            if node[0] == "alt":
                return [max(node[1], key=self._size)]
            if node[0] == "cls":
                return [("lit", chr(max(high for _, high in node[1])))]
            return [node[1]] * node[3]

        return self._expand(choose)

    def _expand(self, choose: Any) -> str:
        # An explicit stack: a string's content is a chain of thousands of rules.
        out: list[str] = []
        stack: list[Node] = [self.rules["root"]]
        while stack:
            node = stack.pop()
            kind = node[0]
            if kind == "lit":
                out.append(node[1])
            elif kind == "seq":
                stack.extend(reversed(node[1]))
            elif kind == "ref":
                stack.append(self.rules[node[1]])
            else:
                stack.extend(reversed(choose(node)))
        return "".join(out)

    def _size(self, node: Node) -> int:
        kind = node[0]
        if kind == "alt":
            return max(self._size(option) for option in node[1])
        if kind == "seq":
            return sum(self._size(item) for item in node[1])
        if kind == "lit":
            return len(node[1].encode())
        if kind == "cls":
            return len(chr(max(high for _, high in node[1])).encode())
        if kind == "ref":
            return self.sizes[node[1]]
        return self._size(node[1]) * node[3]


def _references(node: Node) -> list[str]:
    if node[0] == "ref":
        return [node[1]]
    if node[0] in ("alt", "seq"):
        return [name for item in node[1] for name in _references(item)]
    if node[0] == "rep":
        return _references(node[1])
    return []


def _dependencies_first(rules: dict[str, Node]) -> list[str]:
    """The rule names, each after every rule it refers to (the grammar has no cycle)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in rules:
        stack = [(start, iter(_references(rules[start])))]
        if start in state:
            continue
        state[start] = 1
        while stack:
            name, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                state[name] = 2
                order.append(name)
            elif state.get(child) == 1:
                raise AssertionError(f"the grammar is cyclic through {child}")
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(_references(rules[child]))))
    return order


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.text.startswith("|", self.pos):
            self.pos += 1
            options.append(self.sequence())
        return ("alt", options)

    def sequence(self) -> Node:
        items = []
        self.skip()
        while self.pos < len(self.text) and self.text[self.pos] not in "|)":
            items.append(self.postfix(self.atom()))
            self.skip()
        return ("seq", items)

    def atom(self) -> Node:
        text = self.text
        if text[self.pos] == '"':
            self.pos += 1
            chars = []
            while text[self.pos] != '"':
                chars.append(self.char())
            self.pos += 1
            return ("lit", "".join(chars))
        if text[self.pos] == "[":
            self.pos += 1
            negated = text.startswith("^", self.pos)
            self.pos += negated
            ranges = []
            while text[self.pos] != "]":
                low = ord(self.char())
                high = low
                if text[self.pos] == "-" and text[self.pos + 1] != "]":
                    self.pos += 1
                    high = ord(self.char())
                ranges.append((low, high))
            self.pos += 1
            return ("cls", ranges, negated)
        if text[self.pos] == "(":
            self.pos += 1
            node = self.alternation()
            assert text[self.pos] == ")"
            self.pos += 1
            return node
        name = re.match(r"[A-Za-z0-9-]+", text[self.pos :])
        assert name, text[self.pos :]
        self.pos += name.end()
        return ("ref", name.group())

    def char(self) -> str:
        text = self.text
        if text[self.pos] != "\\":
            self.pos += 1
            return text[self.pos - 1]
        kind = text[self.pos + 1]
        if kind in "xuU":
            digits = {"x": 2, "u": 4, "U": 8}[kind]
            point = int(text[self.pos + 2 : self.pos + 2 + digits], 16)
            self.pos += 2 + digits
            return chr(point)
        self.pos += 2
        return _ESCAPES[kind]

    def postfix(self, node: Node) -> Node:
        text = self.text
        if text.startswith("?", self.pos):
            self.pos += 1
            return ("rep", node, 0, 1)
        found = re.match(r"\{(\d+)(?:,(\d+))?\}", text[self.pos :])
        if found:
            self.pos += found.end()
            least = int(found.group(1))
            return ("rep", node, least, int(found.group(2) or least))
        assert not text.startswith(("*", "+", "{"), self.pos), "unbounded repetition"
        return node


# --- llama.cpp's verdict -----------------------------------------------------------------------


@cache
def vocab() -> Llama:
    """The bundled model's tokenizer (vocabulary only)."""
    from aiservice.providers.bundled_model import bundled_model_path

    return Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)


def llama_accepts_grammar(grammar: str) -> bool:
    sampler = llama_cpp.llama_sampler_init_grammar(vocab()._model.vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def tokenizable(text: str) -> bool:
    """Whether the model can write `text` at all: its tokens spell it back exactly (no token
    holds the lead bytes of planes 4 to 11, for one)."""
    model = vocab()
    return (
        model.detokenize(model.tokenize(text.encode(), add_bos=False, special=False))
        == text.encode()
    )


def llama_allows(grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write `text` and then stop."""
    assert tokenizable(text), text
    model = vocab()
    sampler = llama_cpp.llama_sampler_init_grammar(model._model.vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp refused the grammar"
    try:
        for token in model.tokenize(text.encode(), add_bos=False, special=False):
            if not _allowed(sampler, token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return _allowed(sampler, model.token_eos())
    finally:
        llama_cpp.llama_sampler_free(sampler)


def _allowed(sampler: Any, token: int) -> bool:
    # Offered alone, a token the grammar rejects comes back with logit -inf.
    data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
    candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
    return data[0].logit != float("-inf")
