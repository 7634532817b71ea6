"""The local model's JSON-schema compiler: JSON Schema, to an intermediate form, to GBNF.

One compiler serves every structured output of a local model: response_format's json_schema
and json_object, and forced tool calls (`{"name": ..., "arguments": {...}}`, name first).
Steps: each schema document lowers on its own (json_schema_lowering: refs resolve against the
document they came from, and its rules carry its own name prefix), the costs of the result are
analysed (json_schema_ir), and a writer (json_schema_gbnf) spells it out within a budget.

The budget is the tokens the answer may take, less one for the end-of-text token. Costs are
counted in UTF-8 bytes, and a token is at least one byte, so when the longest document the
grammar allows fits the budget in bytes, the answer ends before max_tokens. When even the
schema's smallest document is longer than that, the grammar is the tightest the schema allows
(free strings empty, lists at their minimum) and the answer may end with finish_reason
"length", as OpenAI's does.

Both steps are cached: the lowering by the schema's canonical text, the grammar by that and the
budget rounded down to its three leading binary digits (so a budget of 100 and one of 110 share
a grammar, allowing 96 bytes).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiservice.errors import InvalidRequest
from aiservice.providers.json_schema_gbnf import GrammarWriter
from aiservice.providers.json_schema_ir import INF, Alt, Costs, Expr, Lit, SchemaRefused, Seq
from aiservice.providers.json_schema_lowering import SEP, WS, Document, Lowering

ANY_OBJECT: dict[str, Any] = {"type": "object"}
_END_OF_TEXT_TOKENS = 1


def compile_schema(schema: Any, *, budget: int, param: str, path: str | None = None) -> str:
    """GBNF for documents valid against `schema` that fit `budget` tokens."""
    spec = {"schema": schema, "path": path or param}
    return _grammar("schema", _canonical(spec, param), budget, param)


def compile_tool_call(tools: list[tuple[str, Any, str]], *, budget: int, param: str) -> str:
    """GBNF for one call of one of `tools` ((name, parameters schema, its path) each)."""
    spec = [
        {"name": name, "parameters": parameters, "path": path} for name, parameters, path in tools
    ]
    return _grammar("tools", _canonical(spec, param), budget, param)


def budget_bucket(budget: int) -> int:
    """`budget` with all but its three leading binary digits cleared: at most 20% less."""
    shift = max(budget.bit_length() - 3, 0)
    return (budget >> shift) << shift


def _canonical(spec: Any, param: str) -> str:
    # Not sort_keys: properties are written in the order the schema gives them.
    try:
        return json.dumps(spec, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # Python's JSON reader lets NaN and Infinity in; JSON has neither
        raise InvalidRequest("Invalid schema: a number is not finite.", param=param) from None


def _grammar(kind: str, spec: str, budget: int, param: str) -> str:
    try:
        root, costs = _analysed(kind, spec)
        smallest = costs.min(root)
        if smallest == INF:
            raise SchemaRefused(
                "The schema admits no JSON document (a required part of it can never be satisfied)"
            )
        room = max(budget_bucket(budget - _END_OF_TEXT_TOKENS), int(smallest))
        grammar = _written(kind, spec, room)
    except SchemaRefused as refused:
        raise InvalidRequest(refused.message, param=param) from None
    except RecursionError:
        raise InvalidRequest("The schema nests too deeply to be enforced.", param=param) from None
    if grammar is None:
        raise InvalidRequest(
            "The schema's smallest document nests $refs too deeply to be enforced.", param=param
        )
    return grammar


@functools.lru_cache(maxsize=128)
def _analysed(kind: str, spec: str) -> tuple[Expr, Costs]:
    document = json.loads(spec)
    root = _schema_root(document) if kind == "schema" else _tool_call_root(document)
    return root, Costs(root)


@functools.lru_cache(maxsize=256)
def _written(kind: str, spec: str, budget: int) -> str | None:
    root, costs = _analysed(kind, spec)
    return GrammarWriter(costs).grammar(root, budget)


def _schema_root(spec: dict[str, Any]) -> Expr:
    return Lowering(Document(spec["schema"], spec["path"], "s")).root()


def _tool_call_root(tools: list[dict[str, Any]]) -> Expr:
    options: list[Expr] = []
    for i, tool in enumerate(tools):
        parameters = tool["parameters"] if tool["parameters"] is not None else ANY_OBJECT
        # Arguments are an object whatever the parameters say, or the call would not parse.
        arguments = Lowering(Document(parameters, tool["path"], f"t{i}")).root(within=ANY_OBJECT)
        name = Lit(json.dumps(tool["name"], ensure_ascii=False))
        head = [Lit('{"name":'), WS, name, SEP, Lit('"arguments":'), WS]
        options.append(Seq([*head, arguments, Lit("}")]))
    return options[0] if len(options) == 1 else Alt(options)
