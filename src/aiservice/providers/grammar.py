"""GBNF grammars that make a local model's output parse: a JSON schema, any JSON object, a
forced tool call. All come from one compiler (json_schema_grammar), bounded by the budget of
tokens the answer may take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiservice.providers.base import FunctionTool, OutputFormat
from aiservice.providers.json_schema_grammar import ANY_OBJECT, compile_schema, compile_tool_call


def schema_grammar(schema: Any, *, budget: int, param: str) -> str:
    """GBNF for documents valid against `schema`; a schema we cannot enforce is a 400."""
    return compile_schema(schema, budget=budget, param=param)


def output_format_grammar(output_format: OutputFormat | None, budget: int) -> str | None:
    if output_format is None or output_format.type == "text":
        return None
    if output_format.type == "json_object":
        return schema_grammar(ANY_OBJECT, budget=budget, param="response_format")
    return schema_grammar(
        output_format.schema if output_format.schema is not None else ANY_OBJECT,
        budget=budget,
        param="response_format.json_schema.schema",
    )


def tool_call_grammar(
    tools: Sequence[FunctionTool], budget: int, offered: Sequence[FunctionTool] = ()
) -> str:
    """One call of one of `tools`; their places among `offered` (the request's tools) name them
    in messages."""
    places = [
        next((i for i, other in enumerate(offered) if other is tool), n)
        for n, tool in enumerate(tools)
    ]
    return compile_tool_call(
        [
            (tool.name, tool.parameters, f"tools[{place}].function.parameters")
            for tool, place in zip(tools, places, strict=True)
        ],
        budget=budget,
        param="tools",
    )
