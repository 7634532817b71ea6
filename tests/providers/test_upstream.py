"""Upstream models against the project's fake upstream, over real HTTP: one test per fault,
each asserting the documented behaviour (attempts, waits, fallbacks, errors, the breaker),
and the stateful APIs working on an upstream model.

One aiservice server serves several upstream models, all pointing at one FakeUpstream with
different resilience settings; faults are queued on the fake before each request.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    start_server,
    stop_server,
    wait_until,
)

LOCAL = "smollm2-135m-instruct"
CHAT = "/v1/chat/completions"
UPSTREAM_KEY = (
    "sk-upstream-test"  # in the gateway's OPENAI_API_KEY, the models' default api_key_env
)


def models_toml(base_url: str) -> str:
    def upstream(name: str, **fields: object) -> str:
        lines = [f'name = "{name}"', 'provider = "openai"', f'base_url = "{base_url}"']
        lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
        return "[[models]]\n" + "\n".join(lines) + "\n"

    return "\n".join(
        [
            f'[[models]]\nname = "{LOCAL}"\n',
            upstream("up", max_retries=2, first_byte_timeout_s=1, upstream_model="fake-model"),
            upstream("up-fallback", max_retries=1, fallbacks=[LOCAL]),
            upstream("up-breaker", max_retries=0, breaker_failures=2, breaker_reset_s=1),
            upstream("up-responses", responses_api=True, max_retries=1),
            upstream("up-nowhere", max_retries=0).replace(base_url, nobody_listening()),
        ]
    )


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean_upstream(upstream: FakeUpstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-upstream")
    (home / "config.toml").write_text(models_toml(upstream.base_url), encoding="utf-8")
    server = start_server(home, env={"OPENAI_API_KEY": UPSTREAM_KEY})
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


def chat_body(model: str = "up", text: str = "hello there", **fields: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def upstream_calls(upstream: FakeUpstream, path: str = CHAT) -> list:
    return [r for r in upstream.requests if r.path == path]


def attempt_lines(gateway: RunningServer, after: int) -> list[dict]:
    """The gateway's failed-attempt log lines since line `after` (a success logs at DEBUG)."""
    return [
        line for line in gateway.log_lines()[after:] if line.get("message") == "upstream attempt"
    ]


def nobody_listening() -> str:
    """A loopback URL whose port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- the happy path ---------------------------------------------------------------------------


def test_a_chat_completion_is_answered_by_the_upstream(sdk, upstream):
    completion = sdk.chat.completions.create(**chat_body())
    assert completion.choices[0].message.content == "Fake reply to: hello there"
    assert completion.model == "up"
    assert completion.usage.prompt_tokens == 2 and completion.usage.completion_tokens == 5
    (call,) = upstream_calls(upstream)
    assert call.json["model"] == "fake-model"  # upstream_model
    # Not streamed by the client: one whole answer asked of the upstream.
    assert call.json["stream"] is False and "stream_options" not in call.json
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert call.headers["content-type"] == "application/json"


def test_a_stream_passes_through_with_usage(sdk, upstream):
    stream = sdk.chat.completions.create(
        **chat_body(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    (call,) = upstream_calls(upstream)
    assert call.json["stream"] is True and call.json["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Fake reply to: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_tools_and_max_tokens_reach_the_upstream(sdk, upstream):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    completion = sdk.chat.completions.create(**chat_body(), tools=[tool], tool_choice="required")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "lookup"
    cut = sdk.chat.completions.create(**chat_body(), max_tokens=2)
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "Fake reply"
    assert upstream_calls(upstream)[-1].json["max_tokens"] == 2


# -- retries ------------------------------------------------------------------------------------


def test_429_is_retried_after_the_wait_the_upstream_asked_for(sdk, upstream):
    upstream.add_fault(Fault(status=429, retry_after=1, times=2))
    started = time.monotonic()
    completion = sdk.chat.completions.create(**chat_body())
    elapsed = time.monotonic() - started
    assert completion.choices[0].message.content == "Fake reply to: hello there"
    calls = upstream_calls(upstream)
    assert len(calls) == 3
    # Retry-After: 1 was honoured before each retry.
    assert calls[1].received - calls[0].received >= 1.0
    assert calls[2].received - calls[1].received >= 1.0
    assert elapsed >= 2.0


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(status=500), "HTTP 500"),
        (Fault(status=503), "HTTP 503"),
        (Fault(drop_connection=True), "connection dropped"),
        (Fault(malformed_json=True), "malformed data"),
        (Fault(first_byte_delay_s=3), "read timeout"),  # beyond first_byte_timeout_s = 1
    ],
    ids=["500", "503", "dropped-connection", "malformed-json", "slow-first-byte"],
)
def test_a_transient_fault_is_retried(sdk, gateway, upstream, fault, outcome):
    before = len(gateway.log_lines())
    upstream.add_fault(fault)
    completion = sdk.chat.completions.create(**chat_body())
    assert completion.choices[0].message.content == "Fake reply to: hello there"
    assert len(upstream_calls(upstream)) == 2
    # The failed attempt is logged with the fault's documented name (the metrics' label).
    assert [line["outcome"] for line in attempt_lines(gateway, before)] == [outcome]


def test_an_upstream_nobody_listens_on_is_a_connect_error(http, gateway):
    before = len(gateway.log_lines())
    error = assert_error_envelope(
        http.post(CHAT, json=chat_body("up-nowhere")), 503, type="server_error"
    )
    assert error["code"] == "upstream_unavailable"
    assert "connect error" in error["message"], error
    assert [line["outcome"] for line in attempt_lines(gateway, before)] == ["connect error"]


def test_400_is_passed_through_and_not_retried(http, upstream):
    upstream.add_fault(Fault(status=400, message="Bad thing in messages."))
    error = assert_error_envelope(http.post(CHAT, json=chat_body()), 400)
    assert error["message"] == "Bad thing in messages."
    assert len(upstream_calls(upstream)) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_upstream_configuration_errors_are_a_502_and_not_retried(http, upstream, status):
    upstream.add_fault(Fault(status=status))
    error = assert_error_envelope(http.post(CHAT, json=chat_body()), 502, type="server_error")
    assert error["code"] == "upstream_error"
    assert len(upstream_calls(upstream)) == 1


def test_when_retries_run_out_without_fallback_the_client_gets_a_503(http, upstream):
    upstream.add_fault(Fault(status=500, times=None))
    error = assert_error_envelope(http.post(CHAT, json=chat_body()), 503, type="server_error")
    assert error["code"] == "upstream_unavailable"
    assert len(upstream_calls(upstream)) == 3  # max_retries = 2


def test_a_stream_that_stalls_after_its_first_chunk_is_not_retried(http, upstream):
    upstream.add_fault(Fault(stall_after_chunks=2, stall_s=30))
    with http.stream("POST", CHAT, json=chat_body(stream=True)) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    # Content came through, then an error event: the first byte had reached the client.
    assert any('"content"' in line for line in lines)
    assert '"error"' in lines[-1]
    assert len(upstream_calls(upstream)) == 1


# -- fallbacks and the breaker --------------------------------------------------------------------


def test_the_fallback_answers_when_retries_run_out(sdk, upstream):
    upstream.add_fault(Fault(status=503, times=None))
    completion = sdk.chat.completions.create(
        **chat_body("up-fallback"), max_tokens=8, temperature=0
    )
    assert completion.model == LOCAL
    assert completion.choices[0].message.content
    assert len(upstream_calls(upstream)) == 2  # max_retries = 1


def test_the_breaker_opens_then_probes_then_closes(http, upstream):
    upstream.add_fault(Fault(status=500, times=None))
    for _ in range(2):  # breaker_failures = 2
        assert_error_envelope(
            http.post(CHAT, json=chat_body("up-breaker")), 503, type="server_error"
        )
    assert len(upstream_calls(upstream)) == 2
    # Open: refused at once, the upstream is not called.
    error = assert_error_envelope(
        http.post(CHAT, json=chat_body("up-breaker")), 503, type="server_error"
    )
    assert "circuit" in error["message"]
    assert len(upstream_calls(upstream)) == 2
    # After breaker_reset_s one probe goes through; the upstream has recovered: closed.
    upstream.clear_faults()
    response = wait_until(
        lambda: (r := http.post(CHAT, json=chat_body("up-breaker"))).status_code == 200 and r,
        timeout=10,
        what="the half-open probe to succeed",
    )
    assert response.json()["choices"][0]["message"]["content"] == "Fake reply to: hello there"
    before = len(upstream_calls(upstream))
    for _ in range(3):
        assert http.post(CHAT, json=chat_body("up-breaker")).status_code == 200
    assert len(upstream_calls(upstream)) == before + 3


# -- the stateful APIs on an upstream model -------------------------------------------------------


def test_stored_completions_work_on_an_upstream_model(sdk):
    completion = sdk.chat.completions.create(**chat_body(), store=True, metadata={"k": "v"})
    stored = sdk.chat.completions.retrieve(completion.id)
    assert stored.choices[0].message.content == "Fake reply to: hello there"
    listed = [c.id for c in sdk.chat.completions.list(metadata={"k": "v"})]
    assert completion.id in listed


def test_a_response_chain_sends_the_earlier_turns_upstream(sdk, upstream):
    first = sdk.responses.create(model="up", input="first question")
    second = sdk.responses.create(
        model="up", input="second question", previous_response_id=first.id
    )
    assert second.output_text == "Fake reply to: second question"
    sent = upstream_calls(upstream)[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "Fake reply to: first question"


def test_background_and_conversations_work_on_an_upstream_model(sdk, upstream):
    conversation = sdk.conversations.create()
    job = sdk.responses.create(
        model="up", input="in the background", background=True, conversation=conversation.id
    )
    done = wait_until(
        lambda: (r := sdk.responses.retrieve(job.id)).status == "completed" and r,
        timeout=30,
        what="the background response to complete",
    )
    assert done.output_text == "Fake reply to: in the background"
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in items] == ["user", "assistant"]


# -- an upstream that serves the Responses API natively ------------------------------------------


def test_a_responses_api_upstream_gets_the_whole_context_as_input_items(sdk, upstream):
    first = sdk.responses.create(model="up-responses", input="first question", instructions="Hi")
    second = sdk.responses.create(
        model="up-responses", input="second question", previous_response_id=first.id
    )
    assert first.output_text == "Fake reply to: first question"
    assert second.output_text == "Fake reply to: second question"
    # The fake counts words: 2 + 5 + 2 in, 5 out.
    assert second.usage.input_tokens == 9 and second.usage.output_tokens == 5
    (_, call) = upstream_calls(upstream, "/v1/responses")
    assert upstream_calls(upstream) == []  # no chat completion was sent
    body = call.json
    assert body["store"] is False and body["stream"] is True
    assert [(i["type"], i.get("role")) for i in body["input"]] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]  # the earlier instructions are not carried over
    assert body["input"][1]["content"] == "Fake reply to: first question"


def test_chat_completions_on_a_responses_api_upstream(sdk, upstream):
    stream = sdk.chat.completions.create(**chat_body("up-responses"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Fake reply to: hello there"
    cut = sdk.chat.completions.create(**chat_body("up-responses"), max_tokens=16)
    assert cut.choices[0].finish_reason == "stop"
    upstream.add_fault(Fault(status=503))
    retried = sdk.chat.completions.create(**chat_body("up-responses"))
    assert retried.choices[0].message.content == "Fake reply to: hello there"
    assert len(upstream_calls(upstream, "/v1/responses")) == 4


# -- the breaker shared through Redis ------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def shared_gateways(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[list[httpx.Client]]:
    """Two aiservice processes with one Redis, each with its own home (and database)."""
    config = models_toml(upstream.base_url)
    servers, clients = [], []
    try:
        for name in ("a", "b"):
            home: Path = tmp_path_factory.mktemp(f"aiservice-shared-{name}")
            (home / "config.toml").write_text(config, encoding="utf-8")
            server = start_server(home, env={"REDIS_URL": REDIS_URL})
            servers.append(server)
            clients.append(
                httpx.Client(
                    base_url=server.base_url,
                    headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    timeout=60,
                )
            )
        yield clients
    finally:
        for client in clients:
            client.close()
        for server in servers:
            stop_server(server)


def test_a_circuit_opened_by_one_process_is_open_for_another(shared_gateways, upstream):
    first, second = shared_gateways
    upstream.add_fault(Fault(status=500, times=None))
    for _ in range(2):  # breaker_failures = 2, in the first process
        assert first.post(CHAT, json=chat_body("up-breaker")).status_code == 503
    calls = len(upstream_calls(upstream))
    # The second process has never failed, yet its circuit is open: refused without a call.
    error = assert_error_envelope(
        second.post(CHAT, json=chat_body("up-breaker")), 503, type="server_error"
    )
    assert "circuit" in error["message"]
    assert len(upstream_calls(upstream)) == calls
    # One probe (from whichever process) closes it for both.
    upstream.clear_faults()
    wait_until(
        lambda: second.post(CHAT, json=chat_body("up-breaker")).status_code == 200,
        timeout=10,
        what="the second process's probe to succeed",
    )
    before = len(upstream_calls(upstream))
    assert first.post(CHAT, json=chat_body("up-breaker")).status_code == 200
    assert len(upstream_calls(upstream)) == before + 1
