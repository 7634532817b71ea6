"""The local model's JSON-schema compiler, construct by construct.

Every grammar is checked three ways: llama.cpp's parser accepts it; documents drawn at random
from exactly what it allows (json_schema_sampling reads the GBNF text, not the compiler's
intermediate form) parse as JSON and validate against the schema with `jsonschema`, and
llama.cpp lets the model write them; and its longest document fits the budget. Documents the
schema rejects are checked to be refused by llama.cpp's grammar sampler.
"""

from __future__ import annotations

from typing import Any

import pytest
from json_schema_sampling import PARAM, check, llama_allows, refused_by_grammar

from aiservice.errors import InvalidRequest
from aiservice.providers.json_schema_grammar import compile_schema

# --- references ---------------------------------------------------------------------------------

ADDRESS = {
    "properties": {
        "street": {"title": "Street", "type": "string"},
        "zip": {"title": "Zip", "type": "string", "pattern": "^[0-9]{5}$"},
    },
    "required": ["street", "zip"],
    "title": "Address",
    "type": "object",
}
# What pydantic writes for a model with nested models: root-relative $refs into $defs.
PERSON = {
    "$defs": {"Address": ADDRESS},
    "properties": {
        "name": {"title": "Name", "type": "string", "description": "Full name"},
        "home": {"$ref": "#/$defs/Address"},
        "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None},
        "tags": {"type": "array", "items": {"type": "string"}, "examples": [["a"]]},
    },
    "required": ["name", "home"],
    "title": "Person",
    "type": "object",
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.com/person",
}


@pytest.mark.parametrize("budget", [60, 200, 2000])
def test_refs_into_defs_resolve(budget):
    documents = check(PERSON, budget)
    assert {"name", "home"} <= set(documents[-1])
    refused_by_grammar(
        PERSON,
        200,
        [
            '{"name":"a","home":{"street":"b","zip":"1234"}}',
            '{"name":"a","home":{"street":"b"}}',
            '{"name":"a"}',
        ],
    )


def test_refs_into_definitions_and_properties_resolve():
    schema = {
        "type": "object",
        "definitions": {"colour": {"enum": ["red", "green"]}},
        "properties": {
            "first": {"$ref": "#/definitions/colour"},
            "second": {"$ref": "#/properties/first"},
            "third": {"$ref": "#/definitions/col%6Fur"},  # percent-encoded, as URIs may be
        },
        "required": ["first", "second", "third"],
        "additionalProperties": False,
    }
    documents = check(schema, 100)
    assert {d["second"] for d in documents} == {"red", "green"}


TREE = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["label", "children"],
    "additionalProperties": False,
}


def _depth(node: dict[str, Any]) -> int:
    return 1 + max((_depth(child) for child in node["children"]), default=0)


@pytest.mark.parametrize("budget", [40, 300, 4000])
def test_a_recursive_schema_unrolls_within_the_budget(budget):
    documents = check(TREE, budget, count=200)
    assert max(_depth(d) for d in documents) >= {40: 1, 300: 2, 4000: 3}[budget]


def test_recursion_through_defs_and_an_optional_property():
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
                "required": ["value"],
            }
        },
        "$ref": "#/$defs/node",
    }
    documents = check(schema, 500, count=200)
    assert any("next" in d and "next" in d["next"] for d in documents)


def test_recursion_through_all_of():
    # What older pydantic writes for a recursive model field with a description.
    schema = {
        "$ref": "#/definitions/Node",
        "definitions": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "parent": {"allOf": [{"$ref": "#/definitions/Node"}], "description": "up"},
                },
                "required": ["name"],
            }
        },
    }
    documents = check(schema, 400, count=200)
    assert any("parent" in d for d in documents)


def test_a_schema_that_needs_infinite_recursion_is_refused():
    schema = {"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]}
    with pytest.raises(InvalidRequest) as refused:
        compile_schema(schema, budget=100, param=PARAM)
    assert refused.value.param == PARAM
    assert "admits no JSON document" in refused.value.message


# --- combinations -------------------------------------------------------------------------------


def test_all_of_with_a_ref_keeps_the_referenced_type():
    # Was: 200 with {"x": {}}, an object where the schema says string.
    schema = {
        "type": "object",
        "properties": {"x": {"allOf": [{"$ref": "#/$defs/S"}], "description": "a string"}},
        "required": ["x"],
        "$defs": {"S": {"type": "string", "maxLength": 8}},
    }
    documents = check(schema, 100)
    assert all(isinstance(d["x"], str) for d in documents)
    refused_by_grammar(schema, 100, ['{"x": {}}', '{"x": 1}'])


def test_all_of_merges_objects():
    schema = {
        "allOf": [
            {"$ref": "#/$defs/named"},
            {
                "type": "object",
                "properties": {"age": {"type": "integer", "minimum": 0}, "name": {"maxLength": 5}},
                "required": ["age"],
            },
        ],
        "$defs": {
            "named": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": {"type": "integer"},
            }
        },
    }
    documents = check(schema, 150)
    assert all(set(d) >= {"name", "age"} and len(d["name"]) <= 5 for d in documents)


def test_any_of_one_of_type_lists_and_null():
    schema = {
        "type": "object",
        "properties": {
            "maybe": {"type": ["string", "null"], "maxLength": 3},
            "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            "shape": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
                        "required": ["kind", "r"],
                    },
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
                        "required": ["kind", "side"],
                    },
                ]
            },
        },
        "required": ["maybe", "either", "shape"],
        "additionalProperties": False,
    }
    documents = check(schema, 200, count=200)
    assert {type(d["maybe"]) for d in documents} == {str, type(None)}
    assert {d["shape"]["kind"] for d in documents} == {"circle", "square"}


def test_one_of_branches_that_may_overlap_are_refused():
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    with pytest.raises(InvalidRequest) as refused:
        compile_schema(schema, budget=100, param=PARAM)
    assert refused.value.message.startswith(f"Unsupported 'oneOf' at {PARAM}: branches 0 and 1")


def test_enum_and_const_keep_only_values_the_rest_allows():
    schema = {
        "type": "object",
        "properties": {
            "level": {"type": "string", "enum": ["low", "high", 3, "x"], "minLength": 2},
            "fixed": {"const": {"a": [1, None]}},
            "any_kind": {"enum": [1.5, True, None, "é"]},
        },
        "required": ["level", "fixed", "any_kind"],
    }
    documents = check(schema, 100)
    assert {d["level"] for d in documents} == {"low", "high"}


# --- objects ------------------------------------------------------------------------------------


def test_required_properties_come_first_then_the_optional_ones_in_schema_order():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
            "c": {"type": "integer"},
            "d": {"type": "integer"},
        },
        "required": ["c", "b"],
        "additionalProperties": False,
    }
    for document in check(schema, 200):
        keys = list(document)
        assert keys[:2] == ["b", "c"]
        assert keys[2:] == [k for k in ("a", "d") if k in keys]


def test_all_optional_properties_any_subset_in_order():
    schema = {"type": "object", "properties": {k: {"type": "boolean"} for k in "xyz"}}
    seen = set()
    for document in check(schema, 200, count=300):
        assert list(document) == sorted(document)
        seen.add("".join(document))
    assert {"", "x", "y", "z", "xz", "xyz"} <= seen


def test_many_optional_properties():
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(150)}}
    documents = check(schema, 2000, count=40)
    assert max(len(d) for d in documents) > 10


def test_additional_properties_false_true_and_a_schema():
    closed = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert all(set(d) <= {"a"} for d in check(closed, 100))
    opened = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": True,
    }
    check(opened, 300)
    typed = {
        "type": "object",
        "properties": {"a": {"const": 1}, "ab": {"type": "boolean"}},
        "additionalProperties": {"type": "integer"},
    }
    documents = check(typed, 300, count=300)
    assert any(set(d) - {"a", "ab"} for d in documents)
    # An extra key never takes a declared name (whose schema would then be broken).
    refused_by_grammar(typed, 300, ['{"a": 2}', '{"ab": 1}', '{"x": true}'])


def test_a_free_object_is_any_json_object():
    documents = check({"type": "object"}, 400, count=200)
    assert any(isinstance(v, dict | list) for d in documents for v in d.values())


# --- arrays -------------------------------------------------------------------------------------


def test_items_min_items_and_max_items():
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}
    documents = check(schema, 200)
    assert {len(d) for d in documents} == {2, 3, 4}
    refused_by_grammar(schema, 200, ["[1]", "[1,2,3,4,5]", '[1,"a"]'])


def test_prefix_items_and_the_draft_7_tuple_form():
    schema = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "boolean"}],
        "items": False,
    }
    assert all(len(d) == 2 for d in check(schema, 100))
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"const": "x"}],
        "additionalItems": {"type": "null"},
        "maxItems": 3,
    }
    assert all(d[0] == "x" and len(d) <= 3 for d in check(draft7, 100))


# --- strings and numbers ------------------------------------------------------------------------


def test_string_lengths():
    schema = {"type": "string", "minLength": 3, "maxLength": 6}
    assert {len(d) for d in check(schema, 100, count=200)} == {3, 4, 5, 6}
    long = {"type": "string", "minLength": 2, "maxLength": 500}
    check(long, 100)  # the budget, not maxLength, bounds it here
    check(long, 3000)


@pytest.mark.parametrize(
    "pattern",
    [
        "^[0-9]{5}$",
        "^[A-Z][a-z]+(-[A-Z][a-z]+)?$",
        r"^\d{3}-\d{4}$",
        "^(red|green|blue)$",
        r"^[^\s@]+@[^\s@]+\.[a-z]{2,4}$",
        "a.c",
        r'^["\\]x*$',
        r"^\w+\s?\W?$",
        "^(?:ab)+(c|d){0,2}$",
        r"^\u00e9\x41[\u0100-\u0110]$",
    ],
)
def test_patterns(pattern):
    check({"type": "string", "pattern": pattern}, 120)


def test_named_groups_are_groups():
    grammar = compile_schema({"type": "string", "pattern": "^(?<x>ab)+$"}, budget=20, param=PARAM)
    assert llama_allows(grammar, '"abab"')
    assert not llama_allows(grammar, '"aba"')


def test_a_pattern_bounded_by_max_length():
    check({"type": "string", "pattern": "^[a-z]+$", "maxLength": 4, "minLength": 2}, 100)


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        ("^(?=a)a$", "a lookaround"),
        (r"^\bword$", "a word boundary"),
        (r"^(a)\1$", "a back reference"),
        ("^a^b$", "'^' inside the expression"),
        (r"^\p{L}$", "the escape '\\p'"),
        ("^(a", "an unclosed group"),
        ("^(a$)", "'$' inside the expression"),
    ],
)
def test_unsupported_patterns_are_refused(pattern, what):
    schema = {"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}}
    with pytest.raises(InvalidRequest) as refused:
        compile_schema(schema, budget=100, param=PARAM)
    assert refused.value.param == PARAM
    message = refused.value.message
    assert message.startswith(
        f"Unsupported regular expression in 'pattern' at {PARAM}.properties.p"
    )
    assert what in message


@pytest.mark.parametrize("form", ["date", "time", "date-time", "uuid"])
def test_formats(form):
    documents = check({"type": "array", "items": {"type": "string", "format": form}}, 300)
    assert any(documents)


def test_formats_a_grammar_cannot_spell_are_plain_strings():
    grammar = compile_schema({"type": "string", "format": "email"}, budget=100, param=PARAM)
    assert grammar == compile_schema({"type": "string"}, budget=100, param=PARAM)
    refused_by_grammar({"type": "string", "format": "date"}, 100, ['"2023-02-30"', '"2023-1-01"'])


def test_integers_and_numbers_within_bounds():
    schema = {
        "type": "object",
        "properties": {
            "small": {"type": "integer", "minimum": -5, "maximum": 120},
            "open": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "negative": {"type": "number", "maximum": -2.5},
            "big": {"type": "integer", "minimum": 1000000},
            "any": {"type": "number"},
        },
        "required": ["small", "open", "ratio", "negative", "big", "any"],
    }
    documents = check(schema, 400, count=300)
    assert {d["open"] for d in documents} == {11, 12}
    assert any(isinstance(d["ratio"], float) for d in documents)
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 2,
        "exclusiveMaximum": True,
    }
    assert 0 not in check(draft4, 40) and 2 not in check(draft4, 40)
    refused_by_grammar(
        {"type": "integer", "minimum": -5, "maximum": 120}, 100, ["121", "-6", "1.5", "01"]
    )
