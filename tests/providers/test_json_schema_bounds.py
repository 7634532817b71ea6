"""The local model's JSON-schema compiler: the budget bounds every answer, and what it cannot
enforce is a 400 naming the keyword and its place; forced tool calls."""

from __future__ import annotations

import json

import jsonschema
import pytest
from json_schema_sampling import (
    PARAM,
    Grammar,
    check,
    draw,
    llama_accepts_grammar,
    llama_allows,
)

from aiservice.errors import InvalidRequest
from aiservice.providers import json_schema_grammar
from aiservice.providers.base import FunctionTool, OutputFormat
from aiservice.providers.grammar import output_format_grammar, tool_call_grammar
from aiservice.providers.json_schema_grammar import budget_bucket, compile_schema

# --- budgets, whitespace, characters ------------------------------------------------------------

FREE = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


@pytest.mark.parametrize("budget", [14, 33, 64, 100, 257, 1000, 6000])
def test_the_longest_document_fits_the_budget_and_uses_most_of_it(budget):
    grammar = compile_schema(FREE, budget=budget, param=PARAM)
    longest = Grammar.parse(grammar).longest_size
    assert longest <= budget - 1
    assert longest >= min(0.75 * (budget - 1), 4096)
    check(FREE, budget, grammar=grammar)


def test_lists_of_free_strings_share_the_budget():
    schema = {"type": "array", "items": FREE}
    check(schema, 500, count=200)


def test_when_even_the_smallest_document_is_too_long_the_grammar_is_the_tightest():
    address = {
        "type": "object",
        "properties": {"street": {"type": "string"}, "zip": {"pattern": "^[0-9]{5}$"}},
        "required": ["street", "zip"],
    }
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "home": address, "tags": {"type": "array"}},
        "required": ["name", "home"],
    }
    grammar = compile_schema(schema, budget=10, param=PARAM)
    parsed = Grammar.parse(grammar)
    smallest = '{"name":"","home":{"street":"","zip":"00000"}}'
    assert parsed.longest_size == len(smallest)
    assert llama_allows(grammar, smallest)


def test_whitespace_is_one_space_at_most_and_strings_hold_no_raw_control_character():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    grammar = compile_schema(schema, budget=100, param=PARAM)
    assert llama_allows(grammar, '{"a": "x\\ny"}')
    for text in ['{"a":  "x"}', '{"a":\n"x"}', ' {"a":"x"}', '{"a":"x\ny"}', '{"a":"x\ty"}']:
        assert not llama_allows(grammar, text), text
    assert not llama_allows(grammar, '{"a":"\\x"}')  # not a JSON escape


def test_budgets_share_grammars_by_their_leading_bits():
    assert [budget_bucket(n) for n in (1, 7, 8, 9, 15, 16, 100, 119, 120, 8191)] == [
        1,
        7,
        8,
        8,
        14,
        16,
        96,
        112,
        112,
        7168,
    ]
    first = compile_schema(FREE, budget=101, param=PARAM)
    assert compile_schema(FREE, budget=110, param=PARAM) is first
    assert json_schema_grammar._written.cache_info().hits >= 1


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"a": {"patternProperties": {"x": {}}}}},
            f"Unsupported schema keyword 'patternProperties' at {PARAM}.properties.a",
        ),
        ({"not": {"type": "string"}}, f"Unsupported schema keyword 'not' at {PARAM}"),
        (
            {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
            f"Unsupported schema keyword 'uniqueItems' at {PARAM}",
        ),
        (
            {"type": "integer", "multipleOf": 5},
            f"Unsupported schema keyword 'multipleOf' at {PARAM}",
        ),
        (
            {"properties": {"a": {"$ref": "https://example.com/a.json"}}},
            f'Unsupported $ref "https://example.com/a.json" at {PARAM}.properties.a',
        ),
        (
            {"items": {"$ref": "#/$defs/missing"}},
            f'Unresolvable $ref "#/$defs/missing" at {PARAM}.items',
        ),
        ({"type": "text"}, f'Invalid schema at {PARAM}: unknown type "text"'),
        ({"type": "string", "maxLength": -1}, f"Invalid schema at {PARAM}: 'maxLength' must be"),
        ({"allOf": [{"$ref": "#"}]}, f"Unsupported $ref at {PARAM}.allOf[0]"),
    ],
)
def test_what_cannot_be_enforced_is_a_400_naming_keyword_and_place(schema, message):
    with pytest.raises(InvalidRequest) as refused:
        output_format_grammar(OutputFormat("json_schema", schema), 200)
    assert refused.value.param == PARAM
    assert refused.value.message.startswith(message), refused.value.message
    assert "Error" not in refused.value.message  # no Python exception's text


def test_a_number_that_is_not_finite_is_refused():
    with pytest.raises(InvalidRequest) as refused:
        compile_schema({"type": "number", "maximum": float("nan")}, budget=50, param=PARAM)
    assert refused.value.message == "Invalid schema: a number is not finite."


def test_json_object_mode_is_any_object():
    grammar = output_format_grammar(OutputFormat("json_object"), 300)
    assert grammar is not None
    check({"type": "object"}, 300, grammar=grammar)
    assert output_format_grammar(OutputFormat("text"), 300) is None
    assert output_format_grammar(None, 300) is None


# --- tool calls ---------------------------------------------------------------------------------

TOOLS = [
    FunctionTool(
        "lookup",
        parameters={
            "type": "object",
            "properties": {"what": {"$ref": "#/$defs/A"}},
            "required": ["what"],
            "$defs": {
                "A": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
            },
        },
    ),
    FunctionTool(
        "choose",
        parameters={
            "type": "object",
            "properties": {
                "pick": {"$ref": "#/$defs/A"},
                "more": {"type": "array", "items": {"$ref": "#"}},
            },
            "required": ["pick"],
            "$defs": {"A": {"enum": ["p", "q"]}},
        },
    ),
    FunctionTool("nothing"),
]


@pytest.mark.parametrize("budget", [60, 400])
def test_forced_tool_calls_resolve_each_tools_refs_in_its_own_parameters(budget):
    grammar = tool_call_grammar(TOOLS, budget, offered=TOOLS)
    assert llama_accepts_grammar(grammar)
    parsed = Grammar.parse(grammar)
    assert parsed.longest_size <= budget - 1
    by_name = {tool.name: tool.parameters or {"type": "object"} for tool in TOOLS}
    seen = set()
    for text in draw(grammar, 200, seed=budget):
        assert text.startswith('{"name":')
        call = json.loads(text)
        assert list(call) == ["name", "arguments"]
        jsonschema.validate(call["arguments"], by_name[call["name"]])
        seen.add(call["name"])
    assert seen == set(by_name)
    assert not llama_allows(grammar, '{"name": "lookup", "arguments": {"what": "p"}}')
    assert llama_allows(grammar, '{"name": "choose", "arguments": {"pick": "p"}}')


def test_a_tools_refusal_names_its_place_among_the_offered_tools():
    bad = FunctionTool("bad", parameters={"type": "object", "properties": {"a": {"if": {}}}})
    with pytest.raises(InvalidRequest) as refused:
        tool_call_grammar([bad], 100, offered=[TOOLS[0], bad])
    assert refused.value.param == "tools"
    assert refused.value.message == (
        "Unsupported schema keyword 'if' at tools[1].function.parameters.properties.a"
    )


def test_tool_arguments_are_an_object_whatever_the_parameters_say():
    loose = FunctionTool("loose", parameters={"description": "anything"})
    grammar = tool_call_grammar([loose], 200)
    for text in draw(grammar, 50):
        assert isinstance(json.loads(text)["arguments"], dict)
