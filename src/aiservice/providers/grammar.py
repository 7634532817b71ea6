"""GBNF grammars that make a local model's output parse: JSON, a JSON schema, a tool call.

Grammars are built from JSON schemas with llama.cpp's own converter and cached by the schema's
canonical text, because the same response_format or tool list comes back request after request.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from aiservice.errors import InvalidRequest
from aiservice.providers.base import FunctionTool, OutputFormat

# Any JSON object. Built through the schema converter rather than llama.cpp's JSON_GBNF because
# the converter bounds whitespace runs: a small model free to emit whitespace may never stop.
_ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def _canonical(schema: Any) -> str:
    # Not sort_keys: the converter emits properties in the order it reads them, and OpenAI's
    # structured outputs (and forced tool calls: name before arguments) keep the schema's order.
    return json.dumps(schema, separators=(",", ":"))


# llama-cpp-python's converter lets a string character be any byte but `"` and `\`, raw control
# characters included, so a model could write a newline inside a string: not JSON, and json.loads
# refuses it. llama.cpp's own converter excludes them (U+0000-U+001F and DEL); so do we.
_LOOSE_CHAR_RULE = r'char ::= [^"\\] |'
_JSON_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] |'


@functools.lru_cache(maxsize=256)
def _gbnf_for(canonical_schema: str) -> str:
    return json_schema_to_gbnf(canonical_schema).replace(_LOOSE_CHAR_RULE, _JSON_CHAR_RULE)


def schema_grammar(schema: dict[str, Any], *, param: str) -> str:
    """GBNF for documents valid against `schema`; a schema we cannot convert is a 400."""
    try:
        return _gbnf_for(_canonical(schema))
    except Exception as exc:  # the converter raises bare Exceptions/KeyErrors on bad schemas
        raise InvalidRequest(f"Invalid schema: {type(exc).__name__}: {exc}", param=param) from None


def output_format_grammar(output_format: OutputFormat | None) -> str | None:
    if output_format is None or output_format.type == "text":
        return None
    if output_format.type == "json_object":
        return schema_grammar(_ANY_OBJECT_SCHEMA, param="response_format")
    return schema_grammar(
        output_format.schema or _ANY_OBJECT_SCHEMA, param="response_format.json_schema.schema"
    )


def tool_call_schema(tools: list[FunctionTool]) -> dict[str, Any]:
    """The JSON a forced tool call must take: `{"name": <one of tools>, "arguments": {...}}`."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                "arguments": tool.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def tool_call_grammar(tools: list[FunctionTool]) -> str:
    return schema_grammar(tool_call_schema(tools), param="tools")
