"""Moderated completions (`moderation` on /v1/chat/completions and /v1/responses) through the
official SDK against a real server whose chat model is the fake upstream over real HTTP: score
and block on each side, streams, background responses, the operator's policy over the
client's, the metrics, and logs without the flagged text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from aiservice.testing.fake_upstream import FakeUpstream
from support import (
    MASTER_KEY,
    RunningServer,
    assert_matches_schema,
    sse_events,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import flushed_records_of, new_account

MODEL = "gpt-4o-mini"  # served by the fake upstream below
THREAT = "I am going to kill you tomorrow, you worthless idiot."
CLEAN_OPENING = "The weather is fine today."
MODERATION = {"model": "omni-moderation-latest"}
BLOCK_OUTPUT = {"model": "omni-moderation-latest", "policy": {"output": {"mode": "block"}}}
BLOCK_INPUT = {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}}}


def _reply(body: dict) -> str:
    """A threat when the caller asks for one, so the output side has something to flag."""
    if "[threaten me]" in json.dumps(body):
        return f"{CLEAN_OPENING} {THREAT} Goodbye."
    return "Happy to help with your meeting on Tuesday."


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(reply=_reply) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-moderated")
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\nbase_url = "{upstream.base_url}"\n',
        encoding="utf-8",
    )
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> OpenAI:
    return OpenAI(base_url=gateway.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(gateway: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def threat_categories(http: httpx.Client) -> list[str]:
    """What the classifier flags THREAT for (POST /v1/moderations): the moderated requests
    below must report the same."""
    (result,) = http.post("/v1/moderations", json={"input": THREAT}).json()["results"]
    flagged = [name for name, value in result["categories"].items() if value]
    assert flagged
    return flagged


def _chat(
    http: httpx.Client, text: str, moderation: dict | None, headers: dict | None = None
) -> httpx.Response:
    body: dict = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if moderation is not None:
        body["moderation"] = moderation
    return http.post("/v1/chat/completions", json=body, headers=headers)


# --- chat completions -----------------------------------------------------------------------


def test_a_moderated_chat_completion_carries_both_sides(sdk: OpenAI, http: httpx.Client) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Book Tuesday?"}],
        moderation=MODERATION,
        n=2,
    )
    moderation = completion.moderation
    assert moderation is not None
    assert moderation.input.type == "moderation_results" and len(moderation.input.results) == 1
    assert moderation.output.type == "moderation_results" and len(moderation.output.results) == 2
    assert not moderation.input.results[0].flagged
    raw = _chat(http, "Book Tuesday?", MODERATION)
    assert_matches_schema(raw.json(), "CreateChatCompletionResponse")


def test_a_request_without_moderation_carries_none(http: httpx.Client) -> None:
    assert "moderation" not in _chat(http, "Book Tuesday?", None).json()


def test_score_reports_a_flagged_output_and_delivers_it(
    sdk: OpenAI, threat_categories: list[str]
) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "[threaten me]"}], moderation=MODERATION
    )
    assert THREAT in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    result = completion.moderation.output.results[0]
    assert result.flagged
    assert [name for name, value in result.categories.items() if value] == threat_categories


def test_block_refuses_a_flagged_input_before_any_model_work(
    gateway: RunningServer, upstream: FakeUpstream, http: httpx.Client, threat_categories
) -> None:
    before = upstream.request_count("/v1/chat/completions")
    answer = _chat(http, THREAT, BLOCK_INPUT, headers={"x-request-id": "blocked-input-1"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "content_policy_violation" and error["param"] == "messages"
    assert all(name in error["message"] for name in threat_categories)
    assert THREAT not in error["message"]
    assert upstream.request_count("/v1/chat/completions") == before
    (record,) = flushed_records_of(gateway, "blocked-input-1")
    assert record["input_tokens"] == 0 and record["output_tokens"] == 0


def test_block_withholds_a_flagged_output(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "[threaten me]"}],
        moderation=BLOCK_OUTPUT,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert "kill" not in (choice.message.content or "")
    assert completion.moderation.output.results[0].flagged
    assert not completion.moderation.input.results[0].flagged  # the other side is scored


def test_a_blocked_stream_sends_only_text_that_passed(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "[threaten me]"}],
        "moderation": BLOCK_OUTPUT,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        events = sse_events(answer)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert_matches_schema(chunk, "CreateChatCompletionStreamResponse")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip() == CLEAN_OPENING  # what passed; nothing of the flagged sentence
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "content_filter"
    moderation_chunk, usage_chunk = chunks[-2], chunks[-1]
    assert moderation_chunk["choices"] == [] and "moderation" in moderation_chunk
    assert moderation_chunk["moderation"]["output"]["results"][0]["flagged"]
    assert usage_chunk["usage"]["completion_tokens"] > 0


def test_a_scored_stream_ends_with_the_moderation_chunk(sdk: OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Book Tuesday?"}],
        moderation=MODERATION,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Happy to help with your meeting on Tuesday."
    assert chunks[-1].choices == [] and chunks[-1].moderation is not None
    assert not chunks[-1].moderation.output.results[0].flagged


# --- responses ------------------------------------------------------------------------------


def test_a_moderated_response_carries_both_sides(sdk: OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(model=MODEL, input="Book Tuesday?", moderation=MODERATION)
    assert response.moderation.input.type == "moderation_result"
    assert response.moderation.output.type == "moderation_result"
    assert not response.moderation.output.flagged
    raw = http.post("/v1/responses", json={"model": MODEL, "input": "Hi", "moderation": MODERATION})
    assert_matches_schema(raw.json(), "Response")


def test_a_blocked_response_is_incomplete_for_content_filter(sdk: OpenAI) -> None:
    response = sdk.responses.create(model=MODEL, input="[threaten me]", moderation=BLOCK_OUTPUT)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "content_filter"
    assert "kill" not in response.output_text
    assert response.moderation.output.flagged


def test_a_blocked_response_stream_never_sends_the_flagged_text(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "[threaten me]", "moderation": BLOCK_OUTPUT, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as answer:
        events = [json.loads(e) for e in sse_events(answer)]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert "kill" not in deltas and CLEAN_OPENING in deltas
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert final["response"]["moderation"]["output"]["flagged"]


def test_a_background_response_runs_under_its_policy(sdk: OpenAI) -> None:
    queued = sdk.responses.create(
        model=MODEL, input="[threaten me]", moderation=BLOCK_OUTPUT, background=True
    )
    done = wait_until(
        lambda: (
            (r := sdk.responses.retrieve(queued.id)).status not in ("queued", "in_progress") and r
        ),
        what="the background response to end",
    )
    assert done.status == "incomplete" and done.incomplete_details.reason == "content_filter"
    assert "kill" not in done.output_text
    assert done.moderation.output.flagged and not done.moderation.input.flagged


def test_a_flagged_background_input_is_refused_when_queued(sdk: OpenAI) -> None:
    with pytest.raises(BadRequestError) as refused:
        sdk.responses.create(model=MODEL, input=THREAT, moderation=BLOCK_INPUT, background=True)
    assert refused.value.body["code"] == "content_policy_violation"
    assert refused.value.body["param"] == "input"


# --- the operator's policy ------------------------------------------------------------------


def test_a_keys_block_policy_beats_the_clients_score(
    gateway: RunningServer, http: httpx.Client
) -> None:
    account = new_account(gateway, "moderation-block")
    put = http.put(f"/v1/admin/keys/{account.key_id}/safety", json={"moderation": "block"})
    assert put.status_code == 200, put.text
    as_key = {"Authorization": f"Bearer {account.key}"}
    weaker = {"model": "omni-moderation-latest", "policy": {"input": {"mode": "score"}}}
    for moderation in (weaker, None):
        answer = _chat(http, THREAT, moderation, headers=as_key)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "content_policy_violation"
    benign = _chat(http, "Book Tuesday?", None, headers=as_key)
    assert benign.status_code == 200
    assert benign.json()["moderation"]["input"]["results"][0]["flagged"] is False
    flagged_output = _chat(http, "[threaten me]", weaker, headers=as_key)
    assert flagged_output.status_code == 200
    assert flagged_output.json()["choices"][0]["finish_reason"] == "content_filter"


def _flag_count(gateway: RunningServer, category: str, side: str, action: str) -> float:
    metrics = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
    prefix = "aiservice_moderation_flagged_total{"
    labels = f'action="{action}",category="{category}",side="{side}"'
    for line in metrics.splitlines():
        if line.startswith(prefix + labels + "}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_flags_are_counted_by_category_side_and_action(
    gateway: RunningServer, http: httpx.Client, threat_categories: list[str]
) -> None:
    category = threat_categories[0]
    blocked = _flag_count(gateway, category, "input", "blocked")
    scored = _flag_count(gateway, category, "output", "scored")
    assert _chat(http, THREAT, BLOCK_INPUT).status_code == 400
    assert _chat(http, "[threaten me]", MODERATION).status_code == 200
    assert _flag_count(gateway, category, "input", "blocked") == blocked + 1
    assert _flag_count(gateway, category, "output", "scored") == scored + 1


def test_no_log_line_holds_the_flagged_text(gateway: RunningServer, http: httpx.Client) -> None:
    _chat(http, THREAT, BLOCK_INPUT)
    _chat(http, "[threaten me]", MODERATION)
    lines = gateway.log_path.read_text(encoding="utf-8")
    assert "moderation flagged" in lines
    assert "kill you" not in lines and "worthless" not in lines
