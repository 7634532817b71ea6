"""The fake OpenAI upstream: its answers through the official SDK and raw HTTP, each fault it
injects, its request record, its HTTP control routes and its lifecycle."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from openai.types.responses import Response
from pydantic import ValidationError

from aiservice.testing import FakeUpstream, Fault
from support import (
    assert_error_envelope,
    assert_matches_openresponses_schema,
    assert_matches_schema,
    free_port,
    responses_sse_events,
    sse_events,
)

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]
REPLY = "Fake reply to: What is the capital of France?"
REPLY_WORDS = ["Fake", " reply", " to:", " What", " is", " the", " capital", " of", " France?"]
PROMPT_WORDS = 9  # "You answer briefly." + "What is the capital of France?"
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
CLOCK_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The module's fake upstream, with no faults, requests or custom reply left over."""
    running_upstream.reset()
    running_upstream.reply = None
    yield running_upstream
    running_upstream.reset()
    running_upstream.reply = None


@pytest.fixture
def sdk(upstream: FakeUpstream) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-anything", max_retries=0, timeout=10)


@pytest.fixture
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=10) as client:
        yield client


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **fields}


def chat_chunks(http: httpx.Client, **fields: Any) -> list[dict[str, Any]]:
    """POST a streamed chat request; check the framing and every chunk's schema."""
    response = http.post(CHAT, json=chat_body(stream=True, **fields))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert_matches_schema(chunk, "CreateChatCompletionStreamResponse")
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def chat_json(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    """POST a chat request; check the body against OpenAI's schema and the SDK's type."""
    response = http.post(CHAT, json=chat_body(**fields))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "CreateChatCompletionResponse")
    ChatCompletion.model_validate(body)
    return body


def read_until_broken(response: httpx.Response) -> tuple[list[str], Exception]:
    """The `data:` lines a stream delivered before it failed, and how it failed."""
    received: list[str] = []
    try:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(line)
    except (httpx.TransportError, openai.APIError) as error:
        return received, error
    raise AssertionError(f"the stream ended normally after {len(received)} events")


def uvicorn_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# Chat completions.


def test_chat_completion_replies_to_the_last_user_message(sdk: OpenAI, http: httpx.Client):
    completion = sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT_WORDS, 9)
    assert completion.usage.total_tokens == PROMPT_WORDS + 9
    assert chat_json(http)["choices"][0]["message"]["content"] == REPLY


def test_message_content_parts_count_and_reply_as_text(http: httpx.Client):
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there friend"}]
    body = chat_json(http, messages=[{"role": "user", "content": parts}])
    assert body["choices"][0]["message"]["content"] == "Fake reply to: Hello there friend"
    assert body["usage"]["prompt_tokens"] == 3


def test_streamed_chat_sends_one_chunk_per_word_then_usage(sdk: OpenAI, http: httpx.Client):
    stream = sdk.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert deltas == ["", *REPLY_WORDS, None]  # the role chunk, the words, the finish chunk
    assert "".join(d or "" for d in deltas) == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 9)
    assert {c.model for c in chunks} == {"gpt-4o"}
    assert len({c.id for c in chunks}) == 1

    raw = chat_chunks(http, stream_options={"include_usage": True})
    assert all(chunk["usage"] is None for chunk in raw[:-1])  # as OpenAI sends them
    assert "usage" not in chat_chunks(http)[-1]  # only when asked for


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_cuts_the_reply_to_that_many_words(http: httpx.Client, limit: str):
    body = chat_json(http, **{limit: 3})
    assert body["choices"][0]["message"]["content"] == "Fake reply to:"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3

    chunks = chat_chunks(http, **{limit: 3})
    words = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert words == ["Fake", " reply", " to:"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_limit_above_the_reply_length_stops_normally(http: httpx.Client):
    body = chat_json(http, max_tokens=100)
    assert (body["choices"][0]["message"]["content"], body["choices"][0]["finish_reason"]) == (
        REPLY,
        "stop",
    )


def test_required_tool_choice_calls_the_first_tool(sdk: OpenAI):
    completion = sdk.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        tools=[WEATHER_TOOL, CLOCK_TOOL],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, call.function.arguments) == (
        "function",
        "get_weather",
        "{}",
    )
    assert call.id


def test_a_named_tool_choice_calls_that_tool_streamed_as_deltas(http: httpx.Client):
    named = {"type": "function", "function": {"name": "get_time"}}
    body = chat_json(http, tools=[WEATHER_TOOL, CLOCK_TOOL], tool_choice=named)
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"

    chunks = chat_chunks(http, tools=[WEATHER_TOOL, CLOCK_TOOL], tool_choice=named)
    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_time" and calls[0]["id"]
    assert "".join(call["function"]["arguments"] for call in calls) == "{}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tools_without_a_forcing_choice_get_a_text_reply(http: httpx.Client):
    body = chat_json(http, tools=[WEATHER_TOOL], tool_choice="auto")
    assert body["choices"][0]["message"]["content"] == REPLY


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "empty", "schema": {"type": "object"}}},
    ],
)
def test_json_response_format_replies_an_empty_object(sdk: OpenAI, response_format: Any):
    completion = sdk.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        response_format=response_format,
    )
    assert json.loads(completion.choices[0].message.content or "") == {}


def test_logprobs_give_each_word_as_a_token(http: httpx.Client):
    body = chat_json(http, logprobs=True)
    tokens = body["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == REPLY_WORDS
    assert tokens[1] == {
        "token": " reply",
        "logprob": -0.1,
        "bytes": list(b" reply"),
        "top_logprobs": [],
    }
    assert chat_json(http)["choices"][0]["logprobs"] is None

    chunks = chat_chunks(http, logprobs=True)
    streamed = [c["choices"][0]["logprobs"] for c in chunks[1:-1]]
    assert [lp["content"][0]["token"] for lp in streamed] == REPLY_WORDS


def test_n_choices_each_carry_the_same_reply(sdk: OpenAI, http: httpx.Client):
    completion = sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {REPLY}
    assert completion.usage is not None and completion.usage.completion_tokens == 27

    by_index: dict[int, str] = {0: "", 1: "", 2: ""}
    for chunk in chat_chunks(http, n=3):
        choice = chunk["choices"][0]
        by_index[choice["index"]] += choice["delta"].get("content") or ""
    assert by_index == {0: REPLY, 1: REPLY, 2: REPLY}


def test_reply_is_configurable_fixed_by_function_and_per_request(
    upstream: FakeUpstream, http: httpx.Client
):
    upstream.reply = "Bonjour  tout\nle monde "
    body = chat_json(http)
    assert body["choices"][0]["message"]["content"] == "Bonjour  tout\nle monde "
    words = [c["choices"][0]["delta"].get("content") for c in chat_chunks(http)[1:-1]]
    assert words == ["Bonjour", "  tout", "\nle", " monde "]  # they join back exactly

    upstream.reply = lambda request: f"{len(request['messages'])} messages"
    assert chat_json(http)["choices"][0]["message"]["content"] == "2 messages"

    response = http.post(CHAT, json=chat_body(), headers={"x-fake-reply": "From the header"})
    assert response.json()["choices"][0]["message"]["content"] == "From the header"


def test_reply_given_at_construction():
    with FakeUpstream(reply="Always this") as upstream:
        client = OpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)
        completion = client.chat.completions.create(model="m", messages=MESSAGES)
        assert completion.choices[0].message.content == "Always this"


# The Responses API.


def test_response_has_one_message_with_the_reply(sdk: OpenAI, http: httpx.Client):
    response = sdk.responses.create(
        model="gpt-4o", instructions="You answer briefly.", input="What is the capital of France?"
    )
    assert response.status == "completed"
    assert response.output_text == REPLY
    assert response.model == "gpt-4o"
    assert len(response.output) == 1 and response.output[0].type == "message"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT_WORDS, 9)

    raw = http.post(RESPONSES, json={"model": "gpt-4o", "input": MESSAGES[1:]}).json()
    assert_matches_schema(raw, "Response")
    assert_matches_openresponses_schema(raw, "ResponseResource")
    Response.model_validate(raw)
    assert raw["output"][0]["content"][0]["text"] == REPLY


def test_max_output_tokens_leaves_the_response_incomplete(http: httpx.Client):
    body = http.post(RESPONSES, json={"model": "m", "input": "Hi", "max_output_tokens": 2}).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["content"][0]["text"] == "Fake reply"
    assert_matches_schema(body, "Response")


def test_json_text_format_replies_an_empty_object(sdk: OpenAI):
    response = sdk.responses.create(model="m", input="Hi", text={"format": {"type": "json_object"}})
    assert response.output_text == "{}"


def test_streamed_response_events_come_in_order_numbered_from_zero(sdk: OpenAI, http: httpx.Client):
    response = http.post(RESPONSES, json={"model": "gpt-4o", "input": MESSAGES, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    events = responses_sse_events(response)
    types = [event["type"] for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(REPLY_WORDS),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    deltas = [event["delta"] for event in events if event["type"].endswith(".delta")]
    assert deltas == REPLY_WORDS
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == REPLY
    assert events[-1]["response"]["usage"]["output_tokens"] == 9
    for event in events:
        assert_matches_schema(event, "ResponseStreamEvent")

    streamed = list(sdk.responses.create(model="gpt-4o", input="Hi", stream=True))
    assert streamed[-1].type == "response.completed"
    assert streamed[-1].response.output_text == "Fake reply to: Hi"


# Models, authentication, refused requests.


def test_models_lists_the_configured_ids(sdk: OpenAI, http: httpx.Client):
    assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]
    assert_matches_schema(http.get("/v1/models").json(), "ListModelsResponse")
    assert sdk.models.retrieve("gpt-4o").id == "gpt-4o"
    assert_error_envelope(http.get("/v1/models/nope"), 404, code="model_not_found")
    with FakeUpstream(models=["only-this"]) as other:
        assert httpx.get(f"{other.base_url}/models").json()["data"][0]["id"] == "only-this"


def test_any_bearer_key_is_accepted_by_default(upstream: FakeUpstream):
    for headers in ({"Authorization": "Bearer whatever"}, {}):
        response = httpx.post(
            f"{upstream.base_url}/chat/completions", json=chat_body(), headers=headers
        )
        assert response.status_code == 200


def test_a_configured_api_key_refuses_any_other():
    with FakeUpstream(api_key="sk-right") as upstream:
        url = f"{upstream.base_url}/chat/completions"
        for headers in ({"Authorization": "Bearer sk-wrong"}, {}):
            response = httpx.post(url, json=chat_body(), headers=headers)
            assert_error_envelope(response, 401, code="invalid_api_key")
        wrong = OpenAI(base_url=upstream.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = OpenAI(base_url=upstream.base_url, api_key="sk-right", max_retries=0)
        assert right.chat.completions.create(model="m", messages=MESSAGES).choices


def test_unknown_routes_and_bad_bodies_get_the_error_envelope(http: httpx.Client):
    assert_error_envelope(http.post("/v1/images/generations", json={}), 404)
    assert_error_envelope(http.post("/v1/embeddings", json={}), 400, param="model")
    assert_error_envelope(http.get(CHAT), 405)
    not_json = http.post(CHAT, content=b"{nope", headers={"content-type": "application/json"})
    assert_error_envelope(not_json, 400)
    assert_error_envelope(http.post(CHAT, json={"model": "m"}), 400, param="messages")
    assert_error_envelope(http.post(RESPONSES, json={"input": "Hi"}), 400, param="model")


# Faults: error statuses.

STATUS_ERRORS = [
    (400, openai.BadRequestError, "invalid_request_error"),
    (401, openai.AuthenticationError, "invalid_request_error"),
    (404, openai.NotFoundError, "invalid_request_error"),
    (429, openai.RateLimitError, "requests"),
    (500, openai.InternalServerError, "server_error"),
    (503, openai.InternalServerError, "server_error"),
]


@pytest.mark.parametrize(("status", "sdk_error", "error_type"), STATUS_ERRORS)
def test_status_fault_answers_openai_error_envelope(
    upstream: FakeUpstream,
    sdk: OpenAI,
    http: httpx.Client,
    status: int,
    sdk_error: type[openai.APIStatusError],
    error_type: str,
):
    upstream.add_fault(Fault(status=status))
    with pytest.raises(sdk_error) as raised:
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert raised.value.status_code == status

    upstream.add_fault(Fault(status=status))
    assert_error_envelope(
        http.post(RESPONSES, json={"model": "m", "input": "x"}), status, type=error_type
    )


@pytest.mark.parametrize(("status", "retry_after", "header"), [(429, 1, "1"), (503, 2.5, "2.5")])
def test_retry_after_goes_out_as_headers(
    upstream: FakeUpstream, http: httpx.Client, status: int, retry_after: float, header: str
):
    upstream.add_fault(Fault(status=status, retry_after=retry_after))
    response = http.post(CHAT, json=chat_body(stream=True))
    assert_error_envelope(response, status, type="requests" if status == 429 else "server_error")
    assert response.headers["retry-after"] == header
    assert response.headers["retry-after-ms"] == str(int(retry_after * 1000))


def test_status_fault_envelope_fields_can_be_chosen(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(
        Fault(
            status=429,
            message="You exceeded your current quota.",
            error_type="insufficient_quota",
            error_code="insufficient_quota",
        )
    )
    error = assert_error_envelope(http.post(CHAT, json=chat_body()), 429, type="insufficient_quota")
    assert (error["message"], error["code"]) == (
        "You exceeded your current quota.",
        "insufficient_quota",
    )


def test_times_spoils_that_many_requests_then_answers_normally(
    upstream: FakeUpstream, http: httpx.Client
):
    upstream.add_fault(Fault(status=429, retry_after=1, times=2))
    statuses = [http.post(CHAT, json=chat_body()).status_code for _ in range(4)]
    assert statuses == [429, 429, 200, 200]
    assert upstream.faults == []


def test_times_none_spoils_every_request_until_cleared(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(Fault(status=500, times=None))
    assert [http.post(CHAT, json=chat_body()).status_code for _ in range(3)] == [500] * 3
    upstream.clear_faults()
    assert http.post(CHAT, json=chat_body()).status_code == 200


def test_faults_match_their_path_and_apply_in_order(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(Fault(path="/responses", status=404))  # the /v1 prefix is implied
    upstream.add_fault(Fault(path="/v1/models", status=503))
    upstream.add_fault(Fault(status=500))  # either generation route
    upstream.add_fault(Fault(status=502))

    assert http.get("/v1/models").status_code == 503
    assert http.post(CHAT, json=chat_body()).status_code == 500
    assert http.post(CHAT, json=chat_body()).status_code == 502
    assert http.post(CHAT, json=chat_body()).status_code == 200
    assert http.post(RESPONSES, json={"model": "m", "input": "x"}).status_code == 404
    assert http.get("/v1/models").status_code == 200


def test_a_fault_can_be_limited_to_streamed_requests(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(Fault(status=503, stream=True))
    assert http.post(CHAT, json=chat_body()).status_code == 200
    assert http.post(CHAT, json=chat_body(stream=True)).status_code == 503


def test_a_fault_is_one_kind_of_failure():
    with pytest.raises(ValidationError):
        Fault()
    with pytest.raises(ValidationError):
        Fault(status=500, drop_connection=True)
    with pytest.raises(ValidationError):
        Fault(malformed_json=True, stall_after_chunks=1)
    with pytest.raises(ValidationError):
        Fault(first_byte_delay_s=1, retry_after=1)
    with pytest.raises(ValidationError):
        Fault(status=200)
    with pytest.raises(ValidationError):
        Fault(status=500, times=0)
    assert Fault(status=503, first_byte_delay_s=0.1).status == 503  # a delay goes with any


# Faults: time.


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_delay_holds_back_even_the_headers(
    upstream: FakeUpstream, http: httpx.Client, stream: bool
):
    upstream.add_fault(Fault(first_byte_delay_s=0.4))
    started = time.monotonic()
    with http.stream("POST", CHAT, json=chat_body(stream=stream)) as response:
        first_byte_after = time.monotonic() - started
        response.read()
    assert first_byte_after >= 0.4
    assert response.status_code == 200
    assert REPLY.split()[-1] in response.text


def test_stall_after_chunks_times_out_a_short_read_timeout_after_those_chunks(
    upstream: FakeUpstream, http: httpx.Client
):
    upstream.add_fault(Fault(stall_after_chunks=3))
    timeout = httpx.Timeout(10, read=0.3)
    with http.stream("POST", CHAT, json=chat_body(stream=True), timeout=timeout) as response:
        received, error = read_until_broken(response)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(received) == 3
    assert json.loads(received[2][len("data: ") :])["choices"][0]["delta"]["content"] == " reply"


def test_sdk_stream_times_out_on_a_stall(upstream: FakeUpstream):
    upstream.add_fault(Fault(stall_after_chunks=2))
    client = OpenAI(
        # The SDK's own Timeout: it is httpx's on openai 1.x-3.62 and httpx2's from 3.63 on.
        base_url=upstream.base_url,
        api_key="k",
        max_retries=0,
        timeout=openai.Timeout(10, read=0.3),
    )
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 2


def test_a_short_stall_resumes_the_stream(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(Fault(stall_after_chunks=2, stall_s=0.3))
    arrivals: list[float] = []
    lines: list[str] = []
    sent = time.monotonic()
    with http.stream("POST", CHAT, json=chat_body(stream=True)) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
                lines.append(line[len("data: ") :])
    assert lines[-1] == "[DONE]"
    words = [json.loads(line)["choices"][0]["delta"].get("content") or "" for line in lines[:-1]]
    assert "".join(words) == REPLY
    assert arrivals[2] - sent >= 0.3  # the third chunk waited out the stall


def test_stall_on_a_non_streamed_answer_comes_after_the_headers(
    upstream: FakeUpstream, http: httpx.Client
):
    upstream.add_fault(Fault(stall_after_chunks=0))
    timeout = httpx.Timeout(10, read=0.3)
    with http.stream("POST", CHAT, json=chat_body(), timeout=timeout) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            response.read()


def test_responses_stream_stalls_after_that_many_events(upstream: FakeUpstream, http: httpx.Client):
    upstream.add_fault(Fault(path="/responses", stall_after_chunks=4))
    body = {"model": "m", "input": "Hi", "stream": True}
    with http.stream("POST", RESPONSES, json=body, timeout=httpx.Timeout(10, read=0.3)) as response:
        received, error = read_until_broken(response)
    assert isinstance(error, httpx.ReadTimeout)
    assert [json.loads(line[len("data: ") :])["type"] for line in received] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]


# Faults: dropped connections and broken bodies.


def test_drop_connection_closes_before_any_headers(
    upstream: FakeUpstream, sdk: OpenAI, http: httpx.Client, caplog: pytest.LogCaptureFixture
):
    upstream.add_fault(Fault(drop_connection=True, times=2))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post(CHAT, json=chat_body())
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert http.post(CHAT, json=chat_body()).status_code == 200
    assert uvicorn_errors(caplog) == []  # a deliberate drop, not a crash


def test_drop_after_chunks_cuts_the_stream_after_those_chunks(
    upstream: FakeUpstream, http: httpx.Client, caplog: pytest.LogCaptureFixture
):
    upstream.add_fault(Fault(drop_after_chunks=4))
    with http.stream("POST", CHAT, json=chat_body(stream=True)) as response:
        assert response.status_code == 200
        received, error = read_until_broken(response)
    assert isinstance(error, httpx.RemoteProtocolError | httpx.ReadError)
    assert len(received) == 4
    assert uvicorn_errors(caplog) == []


def test_drop_after_chunks_on_a_non_streamed_answer_leaves_the_body_unfinished(
    upstream: FakeUpstream, http: httpx.Client
):
    upstream.add_fault(Fault(drop_after_chunks=0))
    with http.stream("POST", CHAT, json=chat_body()) as response:
        assert response.status_code == 200
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            response.read()


def test_malformed_json_answers_200_with_a_body_that_does_not_parse(
    upstream: FakeUpstream, sdk: OpenAI, http: httpx.Client
):
    upstream.add_fault(Fault(malformed_json=True, times=2))
    response = http.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with pytest.raises((openai.APIResponseValidationError, json.JSONDecodeError)):
        sdk.chat.completions.create(model="m", messages=MESSAGES)


def test_malformed_json_in_a_stream_is_a_broken_data_line(
    upstream: FakeUpstream, sdk: OpenAI, http: httpx.Client
):
    upstream.add_fault(Fault(malformed_json=True, stream=True, times=2))
    response = http.post(CHAT, json=chat_body(stream=True))
    assert sse_events(response)[0] == "{not json"
    with pytest.raises((openai.APIResponseValidationError, json.JSONDecodeError)):
        list(sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True))


# The record of requests.


def test_every_request_is_recorded_with_headers_body_and_time(
    upstream: FakeUpstream, http: httpx.Client
):
    before = time.monotonic()
    http.post(CHAT, json=chat_body(), headers={"Authorization": "Bearer sk-seen", "X-Trace": "t1"})
    upstream.add_fault(Fault(status=500))
    http.post(RESPONSES, json={"model": "m", "input": "Hi"})
    http.get("/v1/models")
    after = time.monotonic()

    first, second, third = upstream.requests
    assert (first.method, first.path, first.json) == ("POST", CHAT, chat_body())
    assert first.headers["authorization"] == "Bearer sk-seen"
    assert first.headers["x-trace"] == "t1"
    assert (second.path, second.json) == (RESPONSES, {"model": "m", "input": "Hi"})
    assert (third.method, third.path, third.json) == ("GET", "/v1/models", None)
    assert before <= first.received <= second.received <= third.received <= after
    assert upstream.request_counts == {CHAT: 1, RESPONSES: 1, "/v1/models": 1}
    assert upstream.request_count("/chat/completions") == 1

    upstream.reset()
    assert (upstream.requests, upstream.request_counts) == ([], {})


def test_the_record_is_complete_under_concurrent_requests(upstream: FakeUpstream):
    with httpx.Client(base_url=upstream.base_url, timeout=10) as client:

        def post(_: int) -> int:
            return client.post("/chat/completions", json=chat_body()).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(post, range(200))) == {200}
    assert upstream.request_count(CHAT) == 200
    assert len(upstream.requests) == 200


def test_counts_alone_are_kept_without_recording():
    with FakeUpstream(record_requests=False) as upstream:
        httpx.post(f"{upstream.base_url}/chat/completions", json=chat_body())
        assert upstream.requests == []
        assert upstream.request_counts == {CHAT: 1}


# Control over HTTP.


def test_faults_are_queued_listed_and_cleared_over_http(http: httpx.Client):
    added = http.post("/_fake/faults", json={"status": 503, "retry_after": 1, "times": 2})
    assert added.status_code == 201
    assert added.json()["fault"]["status"] == 503
    listed = http.get("/_fake/faults").json()["faults"]
    assert [(f["status"], f["remaining"]) for f in listed] == [(503, 2)]

    response = http.post(CHAT, json=chat_body())
    assert_error_envelope(response, 503, type="server_error")
    assert response.headers["retry-after"] == "1"
    assert http.get("/_fake/faults").json()["faults"][0]["remaining"] == 1

    assert http.delete("/_fake/faults").json() == {"cleared": 1}
    assert http.post(CHAT, json=chat_body()).status_code == 200


def test_an_invalid_fault_over_http_is_refused(http: httpx.Client):
    assert_error_envelope(http.post("/_fake/faults", json={"status": 503, "colour": "red"}), 400)
    assert_error_envelope(http.post("/_fake/faults", json={}), 400)
    assert_error_envelope(http.get("/_fake/nothing"), 404)


def test_requests_are_listed_and_cleared_over_http(http: httpx.Client):
    http.post(CHAT, json=chat_body(), headers={"x-trace": "t2"})
    listed = http.get("/_fake/requests").json()
    assert listed["counts"] == {CHAT: 1}  # the control routes are not recorded
    (record,) = listed["requests"]
    assert (record["method"], record["path"], record["json"]) == ("POST", CHAT, chat_body())
    assert record["headers"]["x-trace"] == "t2"
    assert isinstance(record["received"], float)
    assert http.delete("/_fake/requests").json() == {"cleared": 1}
    assert http.get("/_fake/requests").json() == {"requests": [], "counts": {}}


# Running it.


def serving_thread(upstream: FakeUpstream) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"fake-upstream-{upstream.port}"]


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_start_and_stop_are_quick_and_leave_nothing_behind():
    started = time.monotonic()
    upstream = FakeUpstream().start()
    assert time.monotonic() - started < 1
    assert upstream.base_url == f"http://127.0.0.1:{upstream.port}/v1"
    assert upstream.running and len(serving_thread(upstream)) == 1
    assert httpx.get(f"{upstream.base_url}/models").status_code == 200

    stopping = time.monotonic()
    upstream.stop()
    assert time.monotonic() - stopping < 1
    assert not upstream.running
    assert serving_thread(upstream) == []
    assert refuses_connections(upstream.port)
    upstream.stop()  # a second stop does nothing


def test_a_restart_serves_on_the_same_port():
    upstream = FakeUpstream().start()
    port = upstream.port
    upstream.stop()
    with upstream:
        assert upstream.port == port
        assert httpx.get(f"{upstream.base_url}/models").status_code == 200


@pytest.mark.parametrize(
    "fault", [Fault(stall_after_chunks=2), Fault(first_byte_delay_s=3600)], ids=["stall", "delay"]
)
def test_stop_ends_a_stalled_answer_at_once(fault: Fault):
    upstream = FakeUpstream().start()
    upstream.add_fault(fault)
    client = httpx.Client(timeout=30)
    outcome: list[BaseException | int] = []

    def read_stream() -> None:
        try:
            with client.stream(
                "POST", f"{upstream.base_url}/chat/completions", json=chat_body(stream=True)
            ) as response:
                outcome.append(len(read_until_broken(response)[0]))
        except httpx.TransportError as error:
            outcome.append(error)

    reader = threading.Thread(target=read_stream)
    reader.start()
    # The request is in the server's hands once it is recorded.
    deadline = time.monotonic() + 5
    while upstream.request_count(CHAT) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    stopping = time.monotonic()
    upstream.stop()
    assert time.monotonic() - stopping < 2
    reader.join(5)
    client.close()
    assert not reader.is_alive()
    assert serving_thread(upstream) == []
    assert outcome and outcome[0] != 0


def test_command_line_serves_until_interrupted_even_while_a_stream_stalls():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice.testing.fake_upstream", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # The line comes once the port listens: from then on, requests wait to be served.
        assert f"http://127.0.0.1:{port}/v1" in process.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        added = httpx.post(f"{base}/_fake/faults", json={"stall_after_chunks": 1})
        assert added.status_code == 201
        body = chat_body(stream=True)
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            process.wait(10)
            assert time.monotonic() - interrupted < 2
        assert process.returncode == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
