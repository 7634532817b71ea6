"""POST /v1/completions (legacy text completions) on the embedded model, through the official
SDK's `client.completions.create` against the running server: the prompt completed as raw
text (no chat template), prompt lists with `n`, echo, stop, logprobs in the legacy shape,
streaming with usage, refusals naming their parameter, and the usage ledger's record.

Every body is validated against OpenAI's schema; no test relies on what the model writes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from llama_cpp import Llama
from openai import OpenAI
from openai.types import Completion

from aiservice.providers.bundled_model import bundled_model_path
from support import (
    assert_error_envelope,
    assert_matches_schema,
    assert_text_completion_chunk_matches_schema,
    sse_events,
)
from usage_support import flushed_records_of

MODEL = "gpt-4o-mini"  # the default alias of the embedded model
SERVED = "smollm2-135m-instruct"
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: always max_tokens of text
# Greedy, seeded and with the end tokens banned: the same tokens every time, max_tokens of them.
SAME_EVERY_TIME: dict[str, Any] = {"temperature": 0, "seed": 11, "logit_bias": NO_END}
PROMPT = "The lighthouse keeper opened the door and"


def create(client: OpenAI, **params: Any) -> Completion:
    """A non-streamed text completion whose raw body must match OpenAI's response schema."""
    params.setdefault("model", MODEL)
    raw = client.completions.with_raw_response.create(**params)
    assert_matches_schema(raw.http_response.json(), "CreateCompletionResponse")
    return raw.parse()


@pytest.fixture(scope="module")
def vocab() -> Iterator[Llama]:
    """The served model's tokenizer (vocabulary only), to count a raw prompt's tokens."""
    tokenizer = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    yield tokenizer
    tokenizer.close()


def tokens_in(vocab: Llama, text: str) -> int:
    return len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def test_a_string_prompt_is_completed_as_raw_text(client, vocab):
    completion = create(client, prompt=PROMPT, max_tokens=5, **SAME_EVERY_TIME)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == SERVED
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "length", None)
    assert choice.text
    usage = completion.usage
    assert usage is not None
    # Exactly the prompt's own tokens: no chat template around it.
    assert usage.prompt_tokens == tokens_in(vocab, PROMPT)
    assert usage.completion_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_defaults_to_16_as_at_openai(client):
    completion = create(client, prompt=PROMPT, **SAME_EVERY_TIME)
    assert completion.usage is not None and completion.usage.completion_tokens == 16
    assert completion.choices[0].finish_reason == "length"


def test_a_prompt_list_gives_n_choices_per_prompt_numbered_as_openai_does(client, vocab):
    prompts = ["Once upon a time", "The recipe calls for"]
    completion = create(client, prompt=prompts, n=2, max_tokens=3, echo=True, **SAME_EVERY_TIME)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    for choice in completion.choices:
        assert choice.text.startswith(prompts[choice.index // 2])  # echoed, prompt by prompt
        assert len(choice.text) > len(prompts[choice.index // 2])
        assert choice.finish_reason == "length"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == sum(tokens_in(vocab, p) for p in prompts)  # once per prompt
    assert usage.completion_tokens == 2 * 2 * 3
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_echo_puts_the_prompt_before_the_same_completion(client):
    plain = create(client, prompt=PROMPT, max_tokens=6, **SAME_EVERY_TIME)
    echoed = create(client, prompt=PROMPT, max_tokens=6, echo=True, **SAME_EVERY_TIME)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    assert echoed.usage == plain.usage  # echo costs nothing


def test_stop_cuts_the_text_before_the_first_match(client):
    full = create(client, prompt=PROMPT, max_tokens=12, **SAME_EVERY_TIME).choices[0].text
    middle = len(full) // 2
    stop = full[middle : middle + 2]
    assert stop.strip(), full  # a stop made of text, from the middle of the full answer
    cut = create(client, prompt=PROMPT, max_tokens=12, stop=[stop], **SAME_EVERY_TIME)
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("alternatives", [0, 2])
def test_logprobs_come_in_the_legacy_shape(client, alternatives):
    completion = create(
        client, prompt=PROMPT, max_tokens=4, logprobs=alternatives, **SAME_EVERY_TIME
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    tokens = logprobs.tokens or []
    assert len(tokens) == 4
    assert len(logprobs.token_logprobs or []) == len(logprobs.top_logprobs or []) == 4
    assert "".join(tokens) == completion.choices[0].text
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    assert logprobs.text_offset == offsets
    for token, logprob, top in zip(
        tokens, logprobs.token_logprobs or [], logprobs.top_logprobs or [], strict=True
    ):
        assert logprob <= 0
        assert top[token] == logprob  # the sampled token is always among them
        assert 1 <= len(top) <= alternatives + 1
        assert all(value <= 0 for value in top.values())


def test_a_stream_holds_the_same_text_and_usage_as_the_whole_answer(client, http):
    params = {"prompt": PROMPT, "max_tokens": 6, **SAME_EVERY_TIME}
    whole = create(client, **params)
    stream = client.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True}, **params
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"text_completion"}
    assert len({chunk.id for chunk in chunks}) == 1
    *pieces, last = chunks
    assert last.choices == [] and last.usage == whole.usage
    assert all(chunk.usage is None for chunk in pieces)
    assert "".join(c.choices[0].text for c in pieces) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in pieces if c.choices[0].finish_reason] == ["length"]

    body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, **params}
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        chunk = json.loads(event)
        assert chunk["object"] == "text_completion"
        assert_text_completion_chunk_matches_schema(chunk)


def test_a_streamed_echo_opens_each_choice_with_its_prompt(client):
    stream = client.completions.create(
        model=MODEL, prompt=["A", "B"], echo=True, max_tokens=2, stream=True, **SAME_EVERY_TIME
    )
    first_text: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            first_text.setdefault(choice.index, choice.text)
    assert first_text == {0: "A", 1: "B"}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"suffix": " and that was all."}, "suffix"),
        ({"logprobs": 6}, "logprobs"),
        ({"logprobs": 1, "echo": True}, "logprobs"),
        ({"best_of": 2}, "best_of"),  # more candidates than n: the local model ranks none
        ({"best_of": 1, "n": 2}, "best_of"),
        ({"best_of": 2, "n": 2, "stream": True}, "best_of"),
        ({"prompt": [101, 102, 103]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "messages"),  # not a parameter here
        ({"metadata": {"a": "b"}}, "metadata"),  # nor this: nothing is stored
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(http, params, param):
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 2, **params}
    response = http.post("/v1/completions", json=body)
    assert_error_envelope(response, 400, param=param)


def test_best_of_equal_to_n_is_accepted(client):
    completion = create(client, prompt=PROMPT, n=2, best_of=2, max_tokens=2, **SAME_EVERY_TIME)
    assert [c.index for c in completion.choices] == [0, 1]


def test_a_prompt_and_max_tokens_beyond_the_context_are_refused(http):
    response = http.post(
        "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 100_000}
    )
    error = assert_error_envelope(response, 400, param="prompt", code="context_length_exceeded")
    assert "prompt" in error["message"]


def test_an_unknown_model_is_a_404(client, http):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="Hi")
    response = http.post("/v1/completions", json={"model": "no-such-model", "prompt": "Hi"})
    assert_error_envelope(response, 404, param="model", code="model_not_found")


def test_a_completion_leaves_a_usage_record_on_its_route(server, client):
    request_id = f"req-text-{uuid.uuid4().hex}"
    completion = client.completions.create(
        model=MODEL,
        prompt=PROMPT,
        max_tokens=3,
        extra_headers={"x-request-id": request_id},
        **SAME_EVERY_TIME,
    )
    [row] = flushed_records_of(server, request_id)
    usage = completion.usage
    assert usage is not None
    assert row["route"] == "/v1/completions"
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        MODEL,
        SERVED,
        "local",
    )
    assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, 3)
    assert (row["status_code"], row["error_code"]) == (200, None)
    assert row["ttft_ms"] is not None
