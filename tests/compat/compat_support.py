"""What the client-compatibility cases share: the two backends, a nested model, the fake
upstream's schema-shaped replies and the checks that differ between the two backends.

Every case runs twice: on the embedded model (`embedded`: SmolLM2 through llama.cpp, whose JSON
and forced tool calls are grammar-enforced) and on an upstream model served by the project's fake
upstream (`upstream`). The fake answers a JSON schema with an instance of it (the reply set
below), but a forced tool call always with the arguments "{}" (docs/testing.md): on that backend
a case checks that the call came back whole and that the tool's schema reached the upstream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel, Field

from aiservice.testing.fake_upstream import FakeUpstream
from support import MASTER_KEY, RunningServer

LOCAL_MODEL = "smollm2-135m-instruct"
UPSTREAM_MODEL = "gpt-4o-mini"  # configured as an upstream model pointing at the fake
FAKE_TEXT = "A reply from the fake upstream."
# Small bounds: the embedded model is a 135M model on 2 cores.
TEXT_TOKENS = 48
JSON_TOKENS = 128  # a grammar-forced JSON object ends by itself well before this


class Point(BaseModel):
    x: int
    y: int


class Segment(BaseModel):
    """A labelled line segment: a model holding models, so its JSON schema has `$defs`."""

    label: str = Field(max_length=16)
    start: Point
    end: Point


SEGMENT_PROMPT = "Draw the segment labelled 'ab' from (0, 0) to (3, 4)."


@dataclass(frozen=True)
class Backend:
    """One server and the model name a client asks it for."""

    name: str  # "embedded" or "upstream"
    server: RunningServer
    model: str
    fake: FakeUpstream | None = None  # the fake behind the upstream model

    @property
    def embedded(self) -> bool:
        return self.fake is None

    @property
    def api_url(self) -> str:
        return self.server.api_url

    @property
    def api_key(self) -> str:
        return MASTER_KEY

    def client(self) -> OpenAI:
        return OpenAI(base_url=self.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)

    def async_client(self) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)

    def last_upstream_body(self) -> dict[str, Any]:
        """The JSON body of the last request the fake upstream received."""
        assert self.fake is not None
        return self.fake.requests[-1].json

    def forced_call_arguments(self, arguments: str | dict, model: type[BaseModel]) -> Any:
        """A forced tool call's arguments: on the embedded model validated as `model` (returned);
        behind the fake, its fixed "{}" passed through unchanged (None returned)."""
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        if self.embedded:
            return model.model_validate(parsed)
        assert parsed == {}, parsed
        return None

    def assert_upstream_got_segment_schema(self) -> None:
        """Behind the fake: the last upstream request carried Segment's whole schema (a tool's
        parameters or a response format: the inner Point's fields too, inline or under `$defs`),
        so aiservice forwarded the nested schema. A no-op on the embedded model."""
        if self.fake is None:
            return
        body = self.last_upstream_body()
        carried = json.dumps({key: body.get(key) for key in ("tools", "response_format", "text")})
        for name in ("label", "start", "end", "x", "y"):
            assert f'"{name}"' in carried, carried


def schema_reply(body: dict[str, Any]) -> str:
    """The fake upstream's reply: an instance of the request's JSON schema when it asks for one
    (chat `response_format` or Responses `text.format`), else a fixed sentence."""
    schema = _requested_schema(body)
    return FAKE_TEXT if schema is None else json.dumps(example_of(schema))


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return response_format.get("json_schema", {}).get("schema")
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        return text_format.get("schema")
    return None


def example_of(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A small value valid against `schema` (the subset of JSON Schema client libraries emit:
    local `$ref`s, `anyOf`, enums, objects, arrays and scalars with their bounds)."""
    root = schema if root is None else root
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return example_of(target, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: example_of(sub, root) for name, sub in properties.items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), root)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return "a" * min(max(1, schema.get("minLength", 1)), schema.get("maxLength", 8))
    if kind in ("integer", "number"):
        value = schema.get("minimum", 1)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None
