"""Streamed chat completions (`stream=True`) through the official SDK, and the raw SSE beneath.

A seeded request is repeatable, so a streamed answer can be compared with the non-streamed answer
to the same request: streaming must change how the answer travels, not what it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import jsonschema
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from support import assert_matches_schema, sse_events

MODEL = "gpt-4o-mini"
STORY = [{"role": "user", "content": "Write a short story about a cat."}]
CITY_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": CITY_PARAMETERS,
    },
}
FORCED_TOOL_CALL: dict[str, Any] = {
    "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "seed": 4,
    "max_tokens": 60,
}


def complete(client: OpenAI, **params: Any) -> ChatCompletion:
    """The non-streamed answer, its raw body checked against OpenAI's schema."""
    raw = client.chat.completions.with_raw_response.create(model=MODEL, **params)
    assert_matches_schema(raw.http_response.json(), "CreateChatCompletionResponse")
    return raw.parse()


def stream(client: OpenAI, **params: Any) -> list[ChatCompletionChunk]:
    return list(client.chat.completions.create(model=MODEL, stream=True, **params))


def chunks_by_choice(chunks: list[ChatCompletionChunk]) -> dict[int, list[Any]]:
    """Each choice's chunk entries, in order."""
    by_index: dict[int, list[Any]] = defaultdict(list)
    for chunk in chunks:
        for choice in chunk.choices:
            by_index[choice.index].append(choice)
    return dict(by_index)


def streamed_text(chunks: list[ChatCompletionChunk]) -> dict[int, str]:
    return {
        index: "".join(choice.delta.content or "" for choice in choices)
        for index, choices in chunks_by_choice(chunks).items()
    }


def finish_reasons(chunks: list[ChatCompletionChunk]) -> dict[int, list[str]]:
    return {
        index: [choice.finish_reason for choice in choices if choice.finish_reason is not None]
        for index, choices in chunks_by_choice(chunks).items()
    }


def test_streamed_text_equals_the_non_streamed_text_for_the_same_seed(client):
    params = {"messages": STORY, "temperature": 1, "seed": 42, "max_tokens": 24, "n": 2}
    whole = complete(client, **params)
    chunks = stream(client, **params)
    assert streamed_text(chunks) == {c.index: c.message.content for c in whole.choices}
    assert {i: reasons[0] for i, reasons in finish_reasons(chunks).items()} == {
        c.index: c.finish_reason for c in whole.choices
    }


def test_n_streams_every_choice_index(client):
    chunks = stream(client, messages=STORY, n=2, seed=8, max_tokens=6)
    assert sorted(chunks_by_choice(chunks)) == [0, 1]
    assert all(text for text in streamed_text(chunks).values())


def test_first_chunk_of_each_choice_carries_the_assistant_role(client):
    chunks = stream(client, messages=STORY, n=2, seed=8, max_tokens=6)
    for index, choices in chunks_by_choice(chunks).items():
        assert choices[0].delta.role == "assistant", index
        assert all(choice.delta.role is None for choice in choices[1:]), index


def test_each_choice_finishes_exactly_once_in_its_last_chunk(client):
    chunks = stream(client, messages=STORY, n=2, seed=8, max_tokens=6)
    for index, choices in chunks_by_choice(chunks).items():
        assert finish_reasons(chunks)[index] == ["length"], index
        assert choices[-1].finish_reason == "length", index


def test_include_usage_ends_with_a_usage_chunk_matching_the_non_streamed_usage(client):
    params = {"messages": STORY, "seed": 9, "max_tokens": 12, "n": 2}
    whole = complete(client, **params)
    chunks = stream(client, stream_options={"include_usage": True}, **params)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
        whole.usage.total_tokens,
    )
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert all(chunk.choices for chunk in chunks[:-1])


def test_without_include_usage_no_chunk_carries_usage(http):
    body = {"model": MODEL, "messages": STORY, "max_tokens": 6, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = sse_events(response)
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks, events
    assert all(chunk.get("usage") is None for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)


@pytest.mark.parametrize(
    "params",
    [
        {"messages": STORY, "max_tokens": 6},
        {
            "messages": STORY,
            "max_tokens": 4,
            "n": 2,
            "logprobs": True,
            "top_logprobs": 2,
            "stream_options": {"include_usage": True},
        },
        {"messages": STORY, "max_tokens": 30, "temperature": 0, "stop": [" the"]},
        FORCED_TOOL_CALL,
    ],
    ids=["plain", "n-logprobs-usage", "stop", "tool-call"],
)
def test_raw_sse_chunks_match_the_spec_and_end_with_done(http, params):
    body = {"model": MODEL, "stream": True, **params}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks
    for chunk in chunks:
        assert_matches_schema(chunk, "CreateChatCompletionStreamResponse")
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert {chunk["model"] for chunk in chunks} == {"smollm2-135m-instruct"}


@pytest.mark.parametrize(
    ("params", "opening_content"),
    [(FORCED_TOOL_CALL, None), ({"messages": STORY, "max_tokens": 3}, "")],
    ids=["tool-call", "text"],
)
def test_a_choice_opens_with_null_content_for_a_tool_call_and_empty_text_otherwise(
    http, params, opening_content
):
    # Vercel's `ai` shows an empty text part for a tool call that opens with content "".
    body = {"model": MODEL, "stream": True, **params}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = sse_events(response)
    first = json.loads(events[0])["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert "content" in first and first["content"] == opening_content


def test_stop_sequence_cuts_the_stream_like_the_non_streamed_answer(client):
    full = complete(client, messages=STORY, temperature=0, max_tokens=30).choices[0].message
    text = full.content
    middle = len(text) // 2
    stop = text[middle - 3 : middle + 3]  # likely straddles a token boundary
    assert stop.strip() and text.index(stop) > 0, text
    chunks = stream(client, messages=STORY, temperature=0, max_tokens=30, stop=stop)
    assert streamed_text(chunks) == {0: text[: text.index(stop)]}
    assert finish_reasons(chunks) == {0: ["stop"]}


def test_forced_tool_call_streams_a_tool_call_delta_with_valid_arguments(client):
    chunks = stream(client, **FORCED_TOOL_CALL)
    calls: dict[int, dict[str, str]] = defaultdict(lambda: {"id": "", "name": "", "arguments": ""})
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls[delta.index]
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert list(calls) == [0]
    call = calls[0]
    assert call["id"].startswith("call_")
    assert call["name"] == "get_weather"
    jsonschema.validate(json.loads(call["arguments"]), CITY_PARAMETERS)
    assert finish_reasons(chunks) == {0: ["tool_calls"]}
    assert streamed_text(chunks) == {0: ""}


def test_streamed_logprobs_cover_every_token_like_the_non_streamed_ones(client):
    params = {
        "messages": STORY,
        "seed": 13,
        "max_tokens": 10,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = complete(client, **params)
    chunks = stream(client, stream_options={"include_usage": True}, **params)
    entries = [
        entry
        for chunk in chunks
        for choice in chunk.choices
        if choice.logprobs is not None
        for entry in choice.logprobs.content or []
    ]
    assert len(entries) == chunks[-1].usage.completion_tokens == 10
    assert b"".join(bytes(e.bytes) for e in entries).decode("utf-8") == streamed_text(chunks)[0]
    assert all(len(entry.top_logprobs) == 2 for entry in entries)
    expected = whole.choices[0].logprobs.content
    assert [(e.token, e.logprob) for e in entries] == [(e.token, e.logprob) for e in expected]
