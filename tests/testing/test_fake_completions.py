"""The fake upstream's legacy text completions (`POST /v1/completions`), through the official
SDK: deterministic objects and streams of OpenAI's shape, and faults that apply to them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream, Fault
from support import (
    assert_error_envelope,
    assert_matches_schema,
    assert_text_completion_chunk_matches_schema,
    sse_events,
)

COMPLETIONS = "/v1/completions"


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    running_upstream.reset()
    running_upstream.reply = None
    yield running_upstream
    running_upstream.reset()
    running_upstream.reply = None


@pytest.fixture
def sdk(upstream: FakeUpstream) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-anything", max_retries=0, timeout=10)


def test_a_completion_replies_to_its_prompt_counted_in_words(sdk, upstream):
    raw = sdk.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Hi you")
    body = raw.http_response.json()
    assert_matches_schema(body, "CreateCompletionResponse")
    completion = raw.parse()
    assert completion.id.startswith("cmpl-fake-") and completion.object == "text_completion"
    assert completion.model == "gpt-3.5-turbo-instruct"
    [choice] = completion.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, "Fake reply to: Hi you", "stop")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 5)
    assert upstream.request_count(COMPLETIONS) == 1


def test_max_tokens_cuts_the_reply_and_defaults_to_16(sdk):
    cut = sdk.completions.create(model="m", prompt="one two three", max_tokens=2)
    assert (cut.choices[0].text, cut.choices[0].finish_reason) == ("Fake reply", "length")
    long = sdk.completions.create(model="m", prompt="w " * 20)
    assert long.usage is not None and long.usage.completion_tokens == 16
    assert long.choices[0].finish_reason == "length"


def test_a_prompt_list_with_n_echo_and_logprobs(sdk):
    completion = sdk.completions.create(model="m", prompt=["a", "b c"], n=2, echo=True, logprobs=0)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert [c.text for c in completion.choices] == [
        "aFake reply to: a",
        "aFake reply to: a",
        "b cFake reply to: b c",
        "b cFake reply to: b c",
    ]
    logprobs = completion.choices[2].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Fake", " reply", " to:", " b", " c"]
    assert logprobs.token_logprobs == [-0.1] * 5
    assert logprobs.text_offset == [3, 7, 13, 17, 19]  # after the echoed prompt
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 18)


def test_a_stream_comes_word_by_word_then_the_usage(upstream):
    body = {
        "model": "m",
        "prompt": "Hi",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{upstream.base_url}/completions", json=body) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert_text_completion_chunk_matches_schema(chunk)
    *pieces, last = chunks
    assert [p["choices"][0]["text"] for p in pieces] == ["Fake", " reply", " to:", " Hi", ""]
    assert [p["choices"][0]["finish_reason"] for p in pieces] == [None] * 4 + ["stop"]
    assert all(p["usage"] is None for p in pieces)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4


def test_a_fault_without_a_path_spoils_completions_too(sdk, upstream):
    upstream.add_fault(Fault(status=503))
    with pytest.raises(openai.InternalServerError):
        sdk.completions.create(model="m", prompt="x")
    assert sdk.completions.create(model="m", prompt="x").choices[0].text == "Fake reply to: x"


def test_a_prompt_of_the_wrong_type_is_a_400(upstream):
    response = httpx.post(f"{upstream.base_url}/completions", json={"model": "m", "prompt": 5})
    assert_error_envelope(response, 400, param="prompt")
