"""Structured output through the real embedded model: schemas real clients send (pydantic's
nested models with $defs, recursion) as forced tool calls and as response_format, and answers
that end within a small max_tokens."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI

MODEL = "gpt-4o-mini"

# pydantic's schema of `class Person(BaseModel): name: str; home: Address; pets: list[Pet]`.
PERSON: dict[str, Any] = {
    "$defs": {
        "Address": {
            "properties": {
                "city": {"title": "City", "type": "string", "maxLength": 20},
                "zip": {"title": "Zip", "type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "title": "Address",
            "type": "object",
        },
        "Pet": {
            "properties": {
                "kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"},
                "age": {"title": "Age", "type": "integer", "minimum": 0, "maximum": 30},
            },
            "required": ["kind", "age"],
            "title": "Pet",
            "type": "object",
        },
    },
    "properties": {
        "name": {"title": "Name", "type": "string", "maxLength": 20},
        "home": {"$ref": "#/$defs/Address"},
        "pets": {"items": {"$ref": "#/$defs/Pet"}, "title": "Pets", "type": "array", "maxItems": 2},
    },
    "required": ["name", "home", "pets"],
    "title": "Person",
    "type": "object",
}
TREE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "maxLength": 16},
        "subtopics": {"type": "array", "items": {"$ref": "#"}, "maxItems": 3},
    },
    "required": ["topic", "subtopics"],
    "additionalProperties": False,
}
INVENT = [{"role": "user", "content": "Invent a person with a home address and pets."}]


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def test_nested_models_as_a_forced_tool_call(client: OpenAI):
    tool = {"type": "function", "function": {"name": "save_person", "parameters": PERSON}}
    completion = client.chat.completions.create(
        model=MODEL,
        messages=INVENT,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "save_person"}},
        max_tokens=150,
        seed=1,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "save_person"
    jsonschema.validate(json.loads(call.function.arguments), PERSON)


@pytest.mark.parametrize(("schema", "seed"), [(PERSON, 2), (TREE, 3)], ids=["defs", "recursive"])
def test_nested_and_recursive_schemas_as_response_format(client: OpenAI, schema, seed):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}, *INVENT],
        response_format=json_schema_format(schema),
        max_tokens=200,
        seed=seed,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content or ""), schema)


def test_a_free_string_ends_within_a_small_max_tokens(client: OpenAI):
    # Was: the model wrote the story until max_tokens, inside the string, and the JSON broke.
    schema = {
        "type": "object",
        "properties": {"story": {"type": "string"}, "moral": {"allOf": [{"$ref": "#/$defs/s"}]}},
        "required": ["story", "moral"],
        "$defs": {"s": {"type": "string"}},
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        response_format=json_schema_format(schema),
        max_tokens=30,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content or ""), schema)
    assert completion.usage is not None and completion.usage.completion_tokens < 30


def test_a_schema_the_grammar_cannot_enforce_is_a_400(client: OpenAI):
    schema = {"type": "object", "properties": {"a": {"type": "object", "patternProperties": {}}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=INVENT, response_format=json_schema_format(schema), max_tokens=5
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["param"] == "response_format.json_schema.schema"
    assert error["message"] == (
        "Unsupported schema keyword 'patternProperties' at "
        "response_format.json_schema.schema.properties.a"
    )
