"""The Responses API in the foreground: `POST /v1/responses` and the routes around it.

Creating a response, its echo of the request, input forms, formats, tools, request errors,
token counts and streaming run on the session server (`client`, `http`). What needs storage
(retrieve, delete, input items, chains, ownership, a stored stream) runs once per backend
(`[sqlite]`, `[postgres]`) on the `stored_*` servers. Every response body is validated against
OpenAI's `Response` schema and Open Responses' `ResponseResource`; every streamed event against
OpenAI's `ResponseStreamEvent` and the Open Responses event schema of its type. Background
mode is tested elsewhere.

The model is tiny and the machine small: every generation is capped at 16 to 40 tokens. Requests
are greedy (`temperature: 0`) unless a test says otherwise, so that an answer is repeatable and
two answers to the same request can be compared.
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from support import (
    MASTER_KEY,
    SPEC_DIR,
    RunningServer,
    admin_add_user,
    admin_create_key,
    assert_error_envelope,
    assert_matches_openresponses_schema,
    assert_matches_schema,
    bearer,
    new_email,
    responses_sse_events,
    wait_for_log_line,
)

URL = "/v1/responses"
COUNT_URL = "/v1/responses/input_tokens"
MODEL = "gpt-4o-mini"
SERVED_MODEL = "smollm2-135m-instruct"  # what "gpt-4o-mini" resolves to
HI = "Hi"  # answered in about 16 tokens at temperature 0: completes within 40
STORY = "Write a long story about a cat."  # goes on well past 16 tokens
CITY_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": CITY_PARAMETERS,
    "strict": True,
}
WEATHER_QUESTION = "What's the weather in Paris?"
LONG_INSTRUCTIONS = "You are a careful assistant who always answers politely and briefly. " * 12

# -- helpers -------------------------------------------------------------------------------


def request_body(**fields: Any) -> dict[str, Any]:
    """A small greedy request with `fields` laid over it; a None value removes the field."""
    body = {"model": MODEL, "input": HI, "max_output_tokens": 16, "temperature": 0, **fields}
    return {name: value for name, value in body.items() if value is not None}


def assert_response_schemas(body: dict[str, Any]) -> None:
    """Validate a Response body against OpenAI's `Response` and Open Responses' `ResponseResource`.

    Open Responses' `JsonSchemaResponseFormat` types `schema` as null only (a slip in that
    spec: OpenAI's `TextResponseFormatJsonSchema` requires the schema object, and the echo must
    carry it), so the Open Responses check sees a copy with that one value set to null.
    """
    assert_matches_schema(body, "Response")
    relabelled = copy.deepcopy(body)
    text_format = (relabelled.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema" and "schema" in text_format:
        text_format["schema"] = None
    assert_matches_openresponses_schema(relabelled, "ResponseResource")


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    """POST /v1/responses; assert 200 and both schemas; return the body."""
    response = http.post(URL, json=request_body(**fields))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_response_schemas(body)
    return body


def count_tokens(http: httpx.Client, **fields: Any) -> int:
    """POST /v1/responses/input_tokens with `model` and `fields`; return the count."""
    response = http.post(COUNT_URL, json={"model": MODEL, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "TokenCountsResource")
    assert body["object"] == "response.input_tokens" and set(body) == {"object", "input_tokens"}
    return body["input_tokens"]


def output_text(body: dict[str, Any]) -> str:
    """The text of every output_text part of every message item, like the SDK's output_text."""
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def function_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in body["output"] if item["type"] == "function_call"]


def assert_valid_weather_call(call: dict[str, Any]) -> None:
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_"), call
    assert isinstance(call["call_id"], str) and call["call_id"], call
    assert call["name"] == "get_weather"
    assert call["status"] == "completed"
    jsonschema.validate(json.loads(call["arguments"]), CITY_PARAMETERS)


def user_message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "output_text", "text": text}]}


def walk_input_items(http: httpx.Client, response_id: str, **params: Any) -> list[dict]:
    """Every input item, page by page (`after` = last_id while has_more), each page checked."""
    items: list[dict] = []
    after: dict[str, str] = {}
    while True:
        page = http.get(f"{URL}/{response_id}/input_items", params={**params, **after})
        assert page.status_code == 200, page.text
        body = page.json()
        assert_matches_schema(body, "ResponseItemList")
        assert body["object"] == "list"
        ids = [item["id"] for item in body["data"]]
        assert (body["first_id"], body["last_id"]) == ((ids[0], ids[-1]) if ids else ("", ""))
        items += body["data"]
        if not body["has_more"]:
            return items
        assert ids, body
        after = {"after": body["last_id"]}


@cache
def open_responses_event_schemas() -> dict[str, str]:
    """Event type -> the Open Responses schema of that event, read from the spec itself."""
    spec = json.loads((SPEC_DIR / "openresponses-openapi.json").read_text(encoding="utf-8"))
    return {
        schema["properties"]["type"]["enum"][0]: name
        for name, schema in spec["components"]["schemas"].items()
        if name.endswith("StreamingEvent")
    }


def stream_events(http: httpx.Client, **fields: Any) -> list[dict[str, Any]]:
    """POST a `stream: true` request; check the SSE framing, the numbering and the schema of
    every event and the created ... completed/incomplete frame around them; return them."""
    response = http.post(URL, json=request_body(stream=True, **fields))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    assert "[DONE]" not in response.text
    events = responses_sse_events(response)
    assert_well_formed_stream(events)
    return events


def assert_well_formed_stream(events: list[dict[str, Any]]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    schemas = open_responses_event_schemas()
    for event in events:
        assert_matches_schema(event, "ResponseStreamEvent")
        assert event["type"] in schemas, f"no Open Responses event {event['type']!r}"
        assert_matches_openresponses_schema(event, schemas[event["type"]])
    types = [event["type"] for event in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] in ("response.completed", "response.incomplete"), types
    whole = [i for i, event in enumerate(events) if "response" in event]
    assert whole == [0, 1, len(events) - 1], types  # no other event carries the response
    for event in events[:2]:
        assert event["response"]["status"] == "in_progress", event
    assert len({event["response"]["id"] for event in events[:2] + events[-1:]}) == 1
    assert_response_schemas(events[-1]["response"])


def joined(events: list[dict[str, Any]], event_type: str) -> str:
    return "".join(event["delta"] for event in events if event["type"] == event_type)


def the_event(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    matching = [event for event in events if event["type"] == event_type]
    assert len(matching) == 1, [event["type"] for event in events]
    return matching[0]


def call_as(
    server: RunningServer, headers: dict[str, str], method: str, path: str, body: object = None
) -> httpx.Response:
    return httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=120)


def stored_routes(response_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"{URL}/{response_id}"),
        ("GET", f"{URL}/{response_id}/input_items"),
        ("DELETE", f"{URL}/{response_id}"),
    ]


def assert_gone(http: httpx.Client, response_id: str) -> None:
    """Retrieve, input_items and delete all answer 404; chaining to it is a 404 too."""
    for method, path in stored_routes(response_id):
        assert_error_envelope(http.request(method, path), 404)
    assert_unknown_previous(http, response_id)


def assert_unknown_previous(http: httpx.Client, response_id: str) -> None:
    response = http.post(URL, json=request_body(previous_response_id=response_id))
    assert_error_envelope(response, 404, param="previous_response_id")
    count = {"model": MODEL, "input": HI, "previous_response_id": response_id}
    counted = http.post(COUNT_URL, json=count)
    assert_error_envelope(counted, 404, param="previous_response_id")


# -- the response object -------------------------------------------------------------------


def test_create_answers_a_completed_response_object(http):
    body = create(http, input=HI, max_output_tokens=40)

    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["incomplete_details"] is None and body["error"] is None
    assert isinstance(body["created_at"], int) and isinstance(body["completed_at"], int)
    assert body["created_at"] <= body["completed_at"]
    assert body["model"] == SERVED_MODEL
    [message] = body["output"]
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert (message["role"], message["status"]) == ("assistant", "completed")
    [part] = message["content"]
    assert part == {"type": "output_text", "text": part["text"], "annotations": [], "logprobs": []}
    assert part["text"].strip()
    usage = body["usage"]
    assert 0 < usage["output_tokens"] < 40
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] >= 0
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}


def test_cut_by_max_output_tokens_the_response_is_incomplete(http):
    body = create(http, input=STORY, max_output_tokens=16)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 16
    assert output_text(body).strip()


def test_sdk_create_gives_the_output_text_and_the_served_model(client: OpenAI):
    raw = client.responses.with_raw_response.create(
        model=MODEL, input=HI, max_output_tokens=16, temperature=0
    )
    assert_response_schemas(raw.http_response.json())
    response = raw.parse()
    assert response.model == SERVED_MODEL
    assert response.id.startswith("resp_")
    assert response.output_text == output_text(raw.http_response.json())
    assert response.output_text.strip()


def test_the_request_fields_are_echoed(http):
    fields = {
        "instructions": "Answer in one short sentence.",
        "metadata": {"purpose": "echo", "test": uuid.uuid4().hex},
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 17,
        "truncation": "auto",
        "parallel_tool_calls": False,
        "user": "user-1234",
        "safety_identifier": "safety-5678",
        "prompt_cache_key": "cache-key-9",
        "store": False,
        "tools": [WEATHER_TOOL],
        "tool_choice": "none",
        "text": {"format": {"type": "text"}},
    }
    body = create(http, **fields)
    for name in fields.keys() - {"tools", "text"}:
        assert body[name] == fields[name], name
    assert body["background"] is False
    assert body["previous_response_id"] is None
    [tool] = body["tools"]
    assert {name: tool.get(name) for name in WEATHER_TOOL} == WEATHER_TOOL
    assert body["text"]["format"] == {"type": "text"}


def test_documented_defaults_are_echoed(http):
    body = create(http, model=SERVED_MODEL, temperature=None)
    assert body["model"] == SERVED_MODEL
    assert body["store"] is True
    assert body["background"] is False
    assert body["previous_response_id"] is None
    assert body["instructions"] is None
    assert body["tools"] == []
    assert (body["temperature"], body["top_p"]) == (1, 1)
    assert body["truncation"] == "disabled"
    assert body["parallel_tool_calls"] is True
    assert body["max_output_tokens"] == 16
    assert body["text"]["format"] == {"type": "text"}


def test_accepted_and_ignored_parameters_do_not_change_the_answer(http):
    plain = create(http)
    ignored = create(
        http,
        include=["message.output_text.logprobs"],
        reasoning={"effort": "low"},
        service_tier="auto",
        top_logprobs=2,
        max_tool_calls=3,
    )
    assert output_text(ignored) == output_text(plain)
    assert ignored["usage"] == plain["usage"]


# -- input forms ---------------------------------------------------------------------------

EVERY_FORM: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "input_text", "text": "Answer in English."}]},
    {"type": "message", "role": "user", "content": WEATHER_QUESTION},
    {
        "type": "function_call",
        "call_id": "call_weather_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_weather_1", "output": '{"celsius": 21}'},
    assistant_message("It is 21 degrees in Paris."),
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Thanks. "},
            {"type": "input_text", "text": "And tomorrow?"},
        ],
    },
]


def test_every_input_item_form_is_answered_and_counted(http):
    body = create(http, input=EVERY_FORM)
    assert body["status"] in ("completed", "incomplete")
    assert output_text(body).strip()
    whole = count_tokens(http, input=EVERY_FORM)
    assert body["usage"]["input_tokens"] == whole
    # Every item reaches the prompt: leaving any one out makes it shorter.
    for index, item in enumerate(EVERY_FORM):
        fewer = EVERY_FORM[:index] + EVERY_FORM[index + 1 :]
        assert count_tokens(http, input=fewer) < whole, item


def test_a_string_input_is_one_user_message(http):
    as_string = count_tokens(http, input="Name a colour.")
    assert as_string == count_tokens(http, input=[user_message("Name a colour.")])
    assert as_string == count_tokens(
        http,
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Name a colour."}],
            }
        ],
    )
    assert count_tokens(http, input="Name a colour, and then another one.") > as_string


def test_instructions_and_tools_are_part_of_the_prompt(http):
    without = count_tokens(http, input=HI)
    assert count_tokens(http, input=HI, instructions=LONG_INSTRUCTIONS) > without + 100
    assert count_tokens(http, input=HI, tools=[WEATHER_TOOL]) > without + 10


def test_an_image_is_ignored_by_the_text_only_model(server: RunningServer, http):
    image = {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}
    text = {"type": "input_text", "text": "Describe this picture."}
    after = len(server.log_lines())
    body = create(http, input=[{"role": "user", "content": [text, image]}])
    assert body["status"] in ("completed", "incomplete") and body["error"] is None
    assert output_text(body).strip()
    # The answer came from the text alone: the prompt is that of the text without the image.
    text_only = count_tokens(http, input=[{"role": "user", "content": [text]}])
    assert body["usage"]["input_tokens"] == text_only
    wait_for_log_line(
        server,
        lambda line: "ignored" in str(line.get("message", "")),
        after=after,
        what="a log line saying the image was ignored",
    )


# -- formats and tools ---------------------------------------------------------------------


def test_json_object_format_answers_a_json_object(http):
    json_object = {"format": {"type": "json_object"}}
    body = create(
        http,
        input='Reply with the JSON object {"answer": "yes"}.',
        text=json_object,
        max_output_tokens=40,
    )
    assert body["status"] == "completed", body
    assert isinstance(json.loads(output_text(body)), dict)
    assert body["text"]["format"] == {"type": "json_object"}


def test_json_schema_format_answers_json_matching_the_schema(http):
    city_format = {"type": "json_schema", "name": "city", "schema": CITY_PARAMETERS, "strict": True}
    body = create(
        http, input="Name a city as JSON.", text={"format": city_format}, max_output_tokens=40
    )
    assert body["status"] == "completed", body
    jsonschema.validate(json.loads(output_text(body)), CITY_PARAMETERS)
    echoed = body["text"]["format"]
    assert {name: echoed.get(name) for name in city_format} == city_format


@pytest.mark.parametrize(
    "tool_choice",
    ["required", {"type": "function", "name": "get_weather"}],
    ids=["required", "named"],
)
def test_a_forced_tool_call_is_a_function_call_item(http, tool_choice):
    body = create(
        http,
        input=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        max_output_tokens=40,
    )
    calls = function_calls(body)
    assert calls, body["output"]
    for call in calls:
        assert_valid_weather_call(call)
    assert body["tool_choice"] == tool_choice
    assert body["status"] == "completed"


def test_sdk_sees_a_forced_tool_call(client: OpenAI):
    response = client.responses.create(
        model=MODEL,
        input=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0].arguments), CITY_PARAMETERS)
    assert response.output_text == ""


def test_tool_choice_none_never_calls_a_tool(http):
    body = create(http, input=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="none")
    assert function_calls(body) == []
    assert output_text(body).strip()


# -- token counts --------------------------------------------------------------------------

COUNTED_REQUESTS: dict[str, dict[str, Any]] = {
    "instructions-and-tools": {
        "input": WEATHER_QUESTION,
        "instructions": "Use the tools.",
        "tools": [WEATHER_TOOL],
    },
    "json-schema": {
        "input": "Name a city as JSON.",
        "text": {"format": {"type": "json_schema", "name": "city", "schema": CITY_PARAMETERS}},
    },
}


@pytest.mark.parametrize("fields", COUNTED_REQUESTS.values(), ids=COUNTED_REQUESTS.keys())
def test_input_tokens_equal_the_usage_of_the_same_request(http, fields):
    counted = count_tokens(http, **fields)
    assert counted > 0
    assert create(http, **fields)["usage"]["input_tokens"] == counted


def test_sdk_counts_input_tokens(client: OpenAI, http):
    counted = client.responses.input_tokens.count(
        model=MODEL, input=WEATHER_QUESTION, instructions="Be brief.", tools=[WEATHER_TOOL]
    )
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == count_tokens(
        http, input=WEATHER_QUESTION, instructions="Be brief.", tools=[WEATHER_TOOL]
    )


# -- request errors ------------------------------------------------------------------------


def test_an_unknown_parameter_is_named(http, client: OpenAI):
    response = http.post(URL, json=request_body(frobnicate=1))
    error = assert_error_envelope(response, 400, param="frobnicate")
    assert error["message"] == "Unrecognized request argument supplied: frobnicate"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=MODEL, input=HI, max_output_tokens=16, extra_body={"frobnicate": 1}
        )
    assert refused.value.param == "frobnicate"


@pytest.mark.parametrize("value", [15, 0, -1, "sixteen"])
def test_max_output_tokens_below_16_is_refused(http, value):
    response = http.post(URL, json=request_body(max_output_tokens=value))
    assert_error_envelope(response, 400, param="max_output_tokens")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        # An object: the error of the object form (not "should be a valid string").
        ({"conversation": {"name": "no id"}}, "conversation.id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"tools": [WEATHER_TOOL, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools[1]",
        ),
    ],
    ids=["missing-model", "conversation-without-id", "web-search", "file-search"],
)
def test_unsupported_requests_name_the_parameter(http, fields, param):
    assert_error_envelope(http.post(URL, json=request_body(**fields)), 400, param=param)


def raw_json(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json"}}


INVALID_BODIES: dict[str, dict[str, Any]] = {
    "malformed-json": raw_json(b'{"model": "gpt-4o-mini", "input": ['),
    "empty-body": raw_json(b""),
    "json-array": {"json": [request_body()]},
    "input-number": {"json": request_body(input=42)},
    "input-bad-role": {"json": request_body(input=[{"role": "robot", "content": "hi"}])},
    "input-unknown-item": {"json": request_body(input=[{"type": "nonsense"}])},
    "input-message-without-content": {"json": request_body(input=[{"role": "user"}])},
    "function-call-output-without-call-id": {
        "json": request_body(input=[{"type": "function_call_output", "output": "21"}])
    },
    "instructions-number": {"json": request_body(instructions=5)},
    "temperature-string": {"json": request_body(temperature="hot")},
    "temperature-3": {"json": request_body(temperature=3)},
    "top-p-1.5": {"json": request_body(top_p=1.5)},
    "truncation-sometimes": {"json": request_body(truncation="sometimes")},
    "store-maybe": {"json": request_body(store="maybe")},
    "tools-not-a-list": {"json": request_body(tools="get_weather")},
    "function-tool-without-name": {"json": request_body(tools=[{"type": "function"}])},
    "tool-choice-sometimes": {"json": request_body(tools=[WEATHER_TOOL], tool_choice="sometimes")},
    "tool-choice-unknown-function": {
        "json": request_body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "no"})
    },
    "text-format-xml": {"json": request_body(text={"format": {"type": "xml"}})},
    "json-schema-without-schema": {
        "json": request_body(text={"format": {"type": "json_schema", "name": "x"}})
    },
    "metadata-not-an-object": {"json": request_body(metadata="x")},
    "previous-response-id-number": {"json": request_body(previous_response_id=5)},
    "stream-with-max-output-tokens-5": {"json": request_body(stream=True, max_output_tokens=5)},
}


@pytest.mark.parametrize("request_kwargs", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_an_invalid_body_gets_a_400_envelope(http, request_kwargs):
    assert_error_envelope(http.post(URL, **request_kwargs), 400)


BAD_METADATA = {
    "17-pairs": ({f"k{i}": "v" for i in range(17)}, "metadata"),
    "65-char-key": ({"k" * 65: "v"}, "metadata"),
    "513-char-value": ({"k": "v" * 513}, "metadata"),
    "non-string-value": ({"k": 1}, "metadata.k"),
}


@pytest.mark.parametrize(("metadata", "param"), BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_metadata_over_the_limits_is_refused(http, metadata, param):
    assert_error_envelope(http.post(URL, json=request_body(metadata=metadata)), 400, param=param)


def test_metadata_at_the_limits_is_echoed(http):
    metadata = {f"k{i}": "v" for i in range(14)} | {"k" * 64: "v", "long": "v" * 512}
    assert len(metadata) == 16
    assert create(http, metadata=metadata, store=False)["metadata"] == metadata


# -- streaming -----------------------------------------------------------------------------

TEXT_STREAMS = {
    "completes": ({"input": HI, "max_output_tokens": 40}, "response.completed"),
    "cut": ({"input": STORY, "max_output_tokens": 16}, "response.incomplete"),
}


@pytest.mark.parametrize(("fields", "last"), TEXT_STREAMS.values(), ids=TEXT_STREAMS.keys())
def test_a_text_stream_has_the_documented_events_and_the_same_answer(http, fields, last):
    events = stream_events(http, store=False, **fields)
    types = [event["type"] for event in events]
    deltas = types.count("response.output_text.delta")
    assert deltas >= 1, types
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        last,
    ]
    final = events[-1]["response"]
    text = joined(events, "response.output_text.delta")
    assert text.strip()
    assert the_event(events, "response.output_text.done")["text"] == text
    assert the_event(events, "response.content_part.done")["part"]["text"] == text
    item = the_event(events, "response.output_item.done")["item"]
    assert item["content"][0]["text"] == text
    added = the_event(events, "response.output_item.added")["item"]
    assert (added["id"], added["type"], added["role"]) == (item["id"], "message", "assistant")
    for event in events[2:-1]:
        assert event["output_index"] == 0, event
        if "item_id" in event:
            assert event["item_id"] == item["id"], event
    assert final["output"] == [item]
    assert output_text(final) == text
    if last == "response.incomplete":
        assert final["status"] == "incomplete"
        assert final["incomplete_details"] == {"reason": "max_output_tokens"}
        assert final["usage"]["output_tokens"] == 16
    else:
        assert final["status"] == "completed"
    # Streaming changes how the answer travels, not what it is.
    whole = create(http, store=False, **fields)
    assert output_text(whole) == text
    assert whole["usage"] == final["usage"]
    assert whole["status"] == final["status"]


def test_a_tool_call_stream_has_the_argument_events(http):
    events = stream_events(
        http,
        input=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        store=False,
    )
    types = [event["type"] for event in events]
    deltas = types.count("response.function_call_arguments.delta")
    assert deltas >= 1, types
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = the_event(events, "response.output_item.added")["item"]
    assert (added["type"], added["name"]) == ("function_call", "get_weather")
    arguments = joined(events, "response.function_call_arguments.delta")
    assert the_event(events, "response.function_call_arguments.done")["arguments"] == arguments
    item = the_event(events, "response.output_item.done")["item"]
    assert (item["id"], item["call_id"]) == (added["id"], added["call_id"])
    assert item["arguments"] == arguments
    assert_valid_weather_call(item)
    assert events[-1]["response"]["output"] == [item]


def test_sdk_streams_text_events(client: OpenAI):
    events = list(
        client.responses.create(
            model=MODEL,
            input=HI,
            max_output_tokens=24,
            temperature=0,
            store=False,
            stream=True,
            stream_options={"include_obfuscation": False},
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text.strip()
    assert events[-1].response.output_text == text


def test_a_streaming_request_error_is_a_json_envelope_not_a_stream(http):
    response = http.post(URL, json=request_body(stream=True, frobnicate=1))
    assert_error_envelope(response, 400, param="frobnicate")


# -- storage: retrieve and delete ----------------------------------------------------------


def test_retrieve_returns_what_create_answered(stored_client: OpenAI, stored_http):
    metadata = {"test": uuid.uuid4().hex}
    created = create(stored_http, instructions="Be brief.", metadata=metadata)
    response = stored_http.get(f"{URL}/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert_response_schemas(response.json())

    retrieved = stored_client.responses.retrieve(created["id"])
    assert retrieved.id == created["id"]
    assert retrieved.output_text == output_text(created)
    assert retrieved.usage.input_tokens == created["usage"]["input_tokens"]
    assert retrieved.metadata == metadata


def test_retrieve_of_an_unknown_id_is_not_found(stored_client: OpenAI, stored_http):
    for method, path in stored_routes("resp_no_such_response"):
        assert_error_envelope(stored_http.request(method, path), 404)
    with pytest.raises(openai.NotFoundError):
        stored_client.responses.retrieve("resp_no_such_response")
    assert_unknown_previous(stored_http, "resp_no_such_response")


def test_delete_then_every_route_is_not_found(stored_client: OpenAI, stored_http):
    created = create(stored_http)
    kept = create(stored_http)
    response = stored_http.delete(f"{URL}/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": created["id"], "object": "response", "deleted": True}
    assert_gone(stored_http, created["id"])
    with pytest.raises(openai.NotFoundError):
        stored_client.responses.retrieve(created["id"])
    # The SDK's delete returns None; the other response was untouched until then.
    assert stored_http.get(f"{URL}/{kept['id']}").json() == kept
    assert stored_client.responses.delete(kept["id"]) is None
    assert_gone(stored_http, kept["id"])


def test_an_unstored_response_is_not_retrievable(stored_http):
    created = create(stored_http, store=False)
    assert created["store"] is False
    assert_gone(stored_http, created["id"])


@pytest.fixture(scope="module")
def stranger(stored_server: RunningServer) -> dict[str, str]:
    """Bearer headers of a second user of the stored server."""
    email = new_email("stranger")
    admin_add_user(stored_server, email, f"stranger-password-{uuid.uuid4().hex[:8]}")
    return bearer(admin_create_key(stored_server, email))


def test_another_users_response_is_not_found_on_every_route(
    stored_server: RunningServer, stored_http, stranger
):
    created = create(stored_http, instructions="Be brief.")
    for method, path in stored_routes(created["id"]):
        assert_error_envelope(call_as(stored_server, stranger, method, path), 404)
    chained = call_as(
        stored_server, stranger, "POST", URL, request_body(previous_response_id=created["id"])
    )
    assert_error_envelope(chained, 404, param="previous_response_id")
    counted = call_as(
        stored_server,
        stranger,
        "POST",
        COUNT_URL,
        {"model": MODEL, "input": HI, "previous_response_id": created["id"]},
    )
    assert_error_envelope(counted, 404, param="previous_response_id")
    # Its owner still has it whole.
    assert stored_http.get(f"{URL}/{created['id']}").json() == created


# -- storage: chains -----------------------------------------------------------------------


def test_a_chained_response_sees_every_earlier_turn_in_order(stored_http):
    first = create(stored_http, input="My name is Ada.")
    second = create(stored_http, input="What is my name?", previous_response_id=first["id"])
    assert second["previous_response_id"] == first["id"]
    usage = first["usage"]
    assert second["usage"]["input_tokens"] > usage["input_tokens"] + usage["output_tokens"]
    # The context is the chain's inputs and outputs in order: the same prompt as replaying them,
    # back to the first response of the chain.
    replay = [
        user_message("My name is Ada."),
        assistant_message(output_text(first)),
        user_message("What is my name?"),
    ]
    assert second["usage"]["input_tokens"] == count_tokens(stored_http, input=replay)
    third = {"input": "Say it once more.", "previous_response_id": second["id"]}
    replay += [assistant_message(output_text(second)), user_message("Say it once more.")]
    assert count_tokens(stored_http, **third) == count_tokens(stored_http, input=replay)
    assert count_tokens(stored_http, **third) > second["usage"]["total_tokens"]


def test_earlier_instructions_are_not_carried_over(stored_http):
    first = create(stored_http, input=HI, instructions=LONG_INSTRUCTIONS)
    assert first["usage"]["input_tokens"] > count_tokens(stored_http, input=HI) + 100
    second = create(stored_http, input="And again?", previous_response_id=first["id"])
    assert second["instructions"] is None
    chained = {"input": "And again?", "previous_response_id": first["id"]}
    without = count_tokens(stored_http, **chained)
    with_them = count_tokens(stored_http, instructions=LONG_INSTRUCTIONS, **chained)
    assert second["usage"]["input_tokens"] == without
    assert with_them > without + 100
    replay = [user_message(HI), assistant_message(output_text(first)), user_message("And again?")]
    assert without == count_tokens(stored_http, input=replay)


def test_a_tool_result_continues_a_chain_ending_in_a_call(stored_http):
    asked = create(
        stored_http,
        input=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_output_tokens=40,
    )
    [call] = function_calls(asked)
    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "21 C"}
    answered = create(stored_http, previous_response_id=asked["id"], input=[result])
    assert answered["previous_response_id"] == asked["id"]
    assert function_calls(answered) == []
    assert output_text(answered).strip()
    # The prompt is the question, the call and its result, in order.
    replay = [
        user_message(WEATHER_QUESTION),
        {name: call[name] for name in ("type", "call_id", "name", "arguments")},
        result,
    ]
    assert answered["usage"]["input_tokens"] == count_tokens(stored_http, input=replay)
    assert answered["usage"]["input_tokens"] > count_tokens(stored_http, input=WEATHER_QUESTION)


# -- storage: input items ------------------------------------------------------------------


def test_input_items_are_the_responses_own_input(stored_client: OpenAI, stored_http):
    first = create(stored_http, input="Name a colour.", instructions="Be brief.")
    second = create(
        stored_http,
        input="Another one?",
        instructions="Be brief.",
        previous_response_id=first["id"],
    )
    for response, text in ((first, "Name a colour."), (second, "Another one?")):
        page = stored_http.get(f"{URL}/{response['id']}/input_items")
        assert page.status_code == 200, page.text
        body = page.json()
        assert_matches_schema(body, "ResponseItemList")
        [item] = body["data"]
        assert item["id"].startswith("msg_")
        assert item == {
            "id": item["id"],
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
            "status": "completed",
        }
        assert body == {
            "object": "list",
            "data": [item],
            "first_id": item["id"],
            "last_id": item["id"],
            "has_more": False,
        }
        [listed] = list(stored_client.responses.input_items.list(response["id"]))
        assert listed.id == item["id"]
        assert listed.content[0].text == text


CONVERSATION = [
    user_message("one"),
    assistant_message("two"),
    {"type": "message", "role": "user", "content": "three"},
    assistant_message("four"),
    {"role": "user", "content": [{"type": "input_text", "text": "five"}]},
]


def test_input_items_paginate_in_both_orders(stored_client: OpenAI, stored_http):
    created = create(stored_http, input=CONVERSATION)
    asc = walk_input_items(stored_http, created["id"], limit=100, order="asc")
    assert [item["role"] for item in asc] == ["user", "assistant", "user", "assistant", "user"]
    assert [item["content"][0]["text"] for item in asc] == ["one", "two", "three", "four", "five"]
    ids = [item["id"] for item in asc]
    assert len(set(ids)) == 5
    # desc is the default order.
    assert [item["id"] for item in walk_input_items(stored_http, created["id"])] == ids[::-1]
    for limit in (1, 2, 4):
        walked_asc = walk_input_items(stored_http, created["id"], limit=limit, order="asc")
        walked_desc = walk_input_items(stored_http, created["id"], limit=limit, order="desc")
        assert [item["id"] for item in walked_asc] == ids, limit
        assert [item["id"] for item in walked_desc] == ids[::-1], limit
    first_page = stored_http.get(f"{URL}/{created['id']}/input_items", params={"limit": 2}).json()
    assert first_page["has_more"] is True and len(first_page["data"]) == 2
    last_page = stored_http.get(f"{URL}/{created['id']}/input_items", params={"limit": 5}).json()
    assert last_page["has_more"] is False and len(last_page["data"]) == 5

    sdk = stored_client.responses.input_items
    assert [item.id for item in sdk.list(created["id"], limit=2, order="asc")] == ids
    assert [item.id for item in sdk.list(created["id"], limit=2)] == ids[::-1]


@pytest.fixture(scope="module")
def stored_response_id(stored_server: RunningServer) -> str:
    response = call_as(stored_server, bearer(MASTER_KEY), "POST", URL, request_body())
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
    ],
    ids=["limit-0", "limit-101", "limit-not-a-number", "order-sideways"],
)
def test_input_items_query_errors_name_the_parameter(
    stored_http, stored_response_id, params, param
):
    response = stored_http.get(f"{URL}/{stored_response_id}/input_items", params=params)
    assert_error_envelope(response, 400, param=param)


def test_input_items_limit_bounds_are_inclusive(stored_http, stored_response_id):
    for limit in (1, 100):
        page = stored_http.get(f"{URL}/{stored_response_id}/input_items", params={"limit": limit})
        assert page.status_code == 200, page.text
        assert len(page.json()["data"]) == 1


# -- storage: streaming --------------------------------------------------------------------


def test_a_streamed_response_is_stored_whole(stored_client: OpenAI, stored_http):
    events = stream_events(stored_http, input=HI, max_output_tokens=24, store=True)
    final = events[-1]["response"]
    # Retrievable as soon as the stream has ended.
    response = stored_http.get(f"{URL}/{final['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == final

    with stored_client.responses.stream(
        model=MODEL, input=HI, max_output_tokens=40, temperature=0
    ) as sdk:
        text = "".join(event.delta for event in sdk if event.type == "response.output_text.delta")
        streamed = sdk.get_final_response()
    assert streamed.output_text == text and text.strip()
    retrieved = stored_client.responses.retrieve(streamed.id)
    # (The stream helper's final response is a ParsedResponse: compare what both carry.)
    assert retrieved.output_text == streamed.output_text
    assert [item.id for item in retrieved.output] == [item.id for item in streamed.output]
    assert (retrieved.status, retrieved.usage) == (streamed.status, streamed.usage)
    assert (retrieved.created_at, retrieved.model) == (streamed.created_at, streamed.model)
    items = list(stored_client.responses.input_items.list(streamed.id))
    assert [item.content[0].text for item in items] == [HI]
