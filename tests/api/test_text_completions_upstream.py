"""POST /v1/completions on upstream models, behind the project's fake upstream over real HTTP:
passed through to the upstream's own `/v1/completions` (the default for a server that is not
OpenAI's), or emulated through its chat completions (`legacy_completions = false`); retried,
fallen back and recorded like chat.

The fake answers "Fake reply to: <prompt>" and counts tokens in words (docs/testing.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import Completion

from aiservice.testing import FakeUpstream, Fault
from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    assert_text_completion_chunk_matches_schema,
    sse_events,
    start_server,
    stop_server,
)
from usage_support import flushed_records_of

LOCAL = "smollm2-135m-instruct"
PASS_THROUGH = "remote-text"  # the upstream serves /v1/completions
EMULATED = "remote-chat"  # legacy_completions = false: through chat completions
FALLING_BACK = "remote-down"  # an upstream that is down, then the local model
COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def down_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.add_fault(Fault(status=503, times=None))
        yield fake


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    running_upstream.reset()
    yield running_upstream
    running_upstream.reset()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    running_upstream: FakeUpstream,
    down_upstream: FakeUpstream,
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-text-upstream")
    (home / "config.toml").write_text(
        f"""
[[models]]
name = "{LOCAL}"

[[models]]
name = "{PASS_THROUGH}"
provider = "openai"
base_url = "{running_upstream.base_url}"
price_input_per_1m = 2.0
price_output_per_1m = 8.0

[[models]]
name = "{EMULATED}"
provider = "openai"
base_url = "{running_upstream.base_url}"
legacy_completions = false

[[models]]
name = "{FALLING_BACK}"
provider = "openai"
base_url = "{down_upstream.base_url}"
max_retries = 0
breaker_failures = 1000
fallbacks = ["{LOCAL}"]
""",
        encoding="utf-8",
    )
    server = start_server(home, env=NO_DATABASE_URL)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> OpenAI:
    return OpenAI(base_url=gateway.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(gateway: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60
    ) as client:
        yield client


def create(sdk: OpenAI, **params: Any) -> Completion:
    raw = sdk.completions.with_raw_response.create(**params)
    assert_matches_schema(raw.http_response.json(), "CreateCompletionResponse")
    return raw.parse()


def reply_to(prompt: str) -> str:
    return f"Fake reply to: {prompt}"


def sent(upstream: FakeUpstream, path: str) -> list[dict[str, Any]]:
    return [record.json for record in upstream.requests if record.path == path]


# --- passed through to the upstream's /v1/completions ------------------------------------------


def test_a_prompt_is_passed_through_to_the_upstreams_completions(sdk, upstream):
    completion = create(
        sdk, model=PASS_THROUGH, prompt="three little words", max_tokens=5, suffix=" The end."
    )
    [body] = sent(upstream, COMPLETIONS)
    assert sent(upstream, CHAT) == []
    assert body["prompt"] == "three little words"
    assert (body["model"], body["max_tokens"], body["stream"]) == (PASS_THROUGH, 5, False)
    assert body["suffix"] == " The end."  # the upstream decides what it makes of it
    assert completion.model == PASS_THROUGH
    [choice] = completion.choices
    assert choice.text == "Fake reply to: three little"  # five words
    assert choice.finish_reason == "length"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 5, 8)


def test_max_tokens_is_sent_as_16_when_absent(sdk, upstream):
    create(sdk, model=PASS_THROUGH, prompt="hello")
    [body] = sent(upstream, COMPLETIONS)
    assert body["max_tokens"] == 16


def test_a_prompt_list_goes_one_prompt_at_a_time_and_comes_back_numbered(sdk, upstream):
    prompts = ["a b", "c"]
    completion = create(sdk, model=PASS_THROUGH, prompt=prompts, n=2, echo=True)
    bodies = sent(upstream, COMPLETIONS)
    assert [b["prompt"] for b in bodies] == prompts
    assert all(b["n"] == 2 and "echo" not in b for b in bodies)  # aiservice echoes
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert [c.text for c in completion.choices] == [
        prompt + reply_to(prompt) for prompt in prompts for _ in range(2)
    ]
    usage = completion.usage
    assert usage is not None
    # Words: prompts 2 + 1; replies 5 and 4, twice each.
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 18)


def test_a_passed_through_stream_ends_with_the_usage(sdk, http, upstream):
    stream = sdk.completions.create(
        model=PASS_THROUGH,
        prompt="stream this",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    [body] = sent(upstream, COMPLETIONS)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    *pieces, last = chunks
    assert "".join(c.choices[0].text for c in pieces) == reply_to("stream this")
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, 5)
    assert pieces[-1].choices[0].finish_reason == "stop"

    with http.stream(
        "POST",
        COMPLETIONS,
        json={"model": PASS_THROUGH, "prompt": "raw", "stream": True, "max_tokens": 2},
    ) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        assert_text_completion_chunk_matches_schema(json.loads(event))


def test_logprobs_of_an_upstream_come_back_in_the_legacy_shape(sdk, upstream):
    completion = create(sdk, model=PASS_THROUGH, prompt="score me", logprobs=1)
    [body] = sent(upstream, COMPLETIONS)
    assert body["logprobs"] == 1
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    words = ["Fake", " reply", " to:", " score", " me"]
    assert logprobs.tokens == words
    assert logprobs.token_logprobs == [-0.1] * 5
    assert logprobs.top_logprobs == [{word: -0.1} for word in words]
    assert logprobs.text_offset == [0, 4, 10, 14, 20]


def test_a_transient_upstream_failure_is_retried(sdk, upstream):
    upstream.add_fault(Fault(path=COMPLETIONS, status=503, retry_after=0))
    completion = create(sdk, model=PASS_THROUGH, prompt="again")
    assert completion.choices[0].text == reply_to("again")
    assert upstream.request_count(COMPLETIONS) == 2


def test_an_upstream_refusal_reaches_the_client_as_its_400(http, upstream):
    upstream.add_fault(Fault(path=COMPLETIONS, status=400, message="No suffix here."))
    response = http.post(COMPLETIONS, json={"model": PASS_THROUGH, "prompt": "x"})
    error = assert_error_envelope(response, 400)
    assert error["message"] == "No suffix here."


def test_a_pass_through_leaves_a_priced_usage_record(gateway, sdk, upstream):
    request_id = f"req-text-{uuid.uuid4().hex}"
    create(
        sdk,
        model=PASS_THROUGH,
        prompt="count these four words",
        extra_headers={"x-request-id": request_id},
    )
    [row] = flushed_records_of(gateway, request_id)
    assert row["route"] == COMPLETIONS
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        PASS_THROUGH,
        PASS_THROUGH,
        "openai",
    )
    assert (row["input_tokens"], row["output_tokens"]) == (4, 7)
    assert row["cost_usd"] == pytest.approx((4 * 2.0 + 7 * 8.0) / 1e6, rel=1e-12)
    assert (row["status_code"], row["upstream_attempts"]) == (200, 1)


def test_an_upstream_that_is_down_falls_back_to_the_local_model(gateway, sdk):
    request_id = f"req-text-{uuid.uuid4().hex}"
    completion = create(
        sdk,
        model=FALLING_BACK,
        prompt="Once upon a time",
        max_tokens=3,
        logit_bias={"0": -100, "2": -100, "4": -100},
        extra_headers={"x-request-id": request_id},
    )
    assert completion.model == LOCAL
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    [row] = flushed_records_of(gateway, request_id)
    assert (row["model_requested"], row["model_served"], row["upstream_attempts"]) == (
        FALLING_BACK,
        LOCAL,
        1,
    )


# --- emulated through the upstream's chat completions ------------------------------------------


def test_an_emulated_completion_sends_the_prompt_as_one_user_message(sdk, upstream):
    completion = create(sdk, model=EMULATED, prompt="hello there", n=2, echo=True)
    assert sent(upstream, COMPLETIONS) == []
    [body] = sent(upstream, CHAT)
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert (body["max_tokens"], body["n"]) == (16, 2)
    assert completion.object == "text_completion"
    assert [c.text for c in completion.choices] == ["hello there" + reply_to("hello there")] * 2
    assert [c.finish_reason for c in completion.choices] == ["stop", "stop"]
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 10)


def test_an_emulated_stream_is_a_text_completion_stream(sdk, upstream):
    stream = sdk.completions.create(
        model=EMULATED,
        prompt="go on",
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"text_completion"}
    *pieces, last = chunks
    assert "".join(c.choices[0].text for c in pieces) == "Fake reply to:"
    assert pieces[-1].choices[0].finish_reason == "length"
    assert last.usage is not None and last.usage.completion_tokens == 3


def test_emulated_logprobs_come_from_the_chat_logprobs(sdk, upstream):
    completion = create(sdk, model=EMULATED, prompt="x", logprobs=2)
    [body] = sent(upstream, CHAT)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Fake", " reply", " to:", " x"]
    assert logprobs.text_offset == [0, 4, 10, 14]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"suffix": " the end"}, "suffix"), ({"best_of": 3}, "best_of")],
)
def test_what_chat_cannot_do_is_a_400_naming_it(http, upstream, params, param):
    response = http.post(COMPLETIONS, json={"model": EMULATED, "prompt": "x", **params})
    assert_error_envelope(response, 400, param=param)
    assert upstream.requests == []  # refused before any upstream call


def test_an_unknown_model_is_a_404(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="remote-nothing", prompt="x")
