"""The usage ledger on both storage backends: every request on a model route leaves exactly one
record — plain, streamed, refused, failed upstream, fallen back, background — priced from the
configuration, and none is lost when the server stops cleanly.

The servers write their records only every 60 s (`AISERVICE_LEDGER_FLUSH_S`), so the tests
read the table after flushing it through the usage API (which writes what its process holds
first) or after stopping the server. Upstream models are the project's fake upstream over
real HTTP: one that answers, one that is down (503 on every request).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream, Fault
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    bearer,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import Account, flushed_records_of, new_account, records_of

LOCAL = "smollm2-135m-instruct"
ALIAS = "gpt-4o-mini"  # the default alias of the local model
LOCAL_PRICE = (0.5, 1.5)  # USD per 1M input, output tokens
REMOTE_PRICE = (2.0, 8.0)
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: every reply is max_tokens
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
SLOW_FLUSH = {"AISERVICE_LEDGER_FLUSH_S": "60"}


def config(healthy: str, down: str) -> str:
    return f"""
[[models]]
name = "{LOCAL}"
context_window = 2048
price_input_per_1m = {LOCAL_PRICE[0]}
price_output_per_1m = {LOCAL_PRICE[1]}

[[models]]
name = "remote-ok"
provider = "openai"
base_url = "{healthy}"
price_input_per_1m = {REMOTE_PRICE[0]}
price_output_per_1m = {REMOTE_PRICE[1]}

[[models]]
name = "remote-down"
provider = "openai"
base_url = "{down}"
max_retries = 1
breaker_failures = 1000

[[models]]
name = "remote-flaky"
provider = "openai"
base_url = "{down}"
max_retries = 1
breaker_failures = 1000
fallbacks = ["{LOCAL}"]
"""


@pytest.fixture(scope="module")
def healthy_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def down_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.add_fault(Fault(status=503, times=None))
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend_env(
    request: pytest.FixtureRequest, postgres_databases: PostgresDatabases
) -> dict[str, str | None]:
    """The environment choosing one storage backend: a home's SQLite, or a fresh database."""
    if request.param == "postgres":
        return {**NO_DATABASE_URL, "DATABASE_URL": postgres_databases.create()}
    return dict(NO_DATABASE_URL)


@pytest.fixture(scope="module")
def ledger_server(
    tmp_path_factory: pytest.TempPathFactory,
    backend_env: dict[str, str | None],
    healthy_upstream: FakeUpstream,
    down_upstream: FakeUpstream,
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-ledger")
    (home / "config.toml").write_text(
        config(healthy_upstream.base_url, down_upstream.base_url), encoding="utf-8"
    )
    server = start_server(home, env={**backend_env, **SLOW_FLUSH})
    yield server
    stop_server(server)


@pytest.fixture
def account(ledger_server: RunningServer) -> Account:
    return new_account(ledger_server)


def sdk_for(server: RunningServer, key: str) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=key, max_retries=0, timeout=120)


def new_request_id() -> str:
    return f"req-usage-{uuid.uuid4().hex}"


def cost(price: tuple[float, float], input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def utc_day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


# Seeded, greedy and with the end tokens banned: the same tokens every time, max_tokens of them.
SAME_EVERY_TIME: dict[str, Any] = {
    "model": ALIAS,
    "messages": [{"role": "user", "content": "Write a short line about the sea."}],
    "max_tokens": 8,
    "temperature": 0,
    "seed": 7,
    "logit_bias": NO_END,
}


def test_a_plain_request_leaves_one_priced_record(ledger_server, account):
    request_id = new_request_id()
    sent_at = time.time()
    completion = sdk_for(ledger_server, account.key).chat.completions.create(
        **SAME_EVERY_TIME,
        metadata={"feature": "auto_reply"},
        extra_headers={"x-request-id": request_id},
    )

    [row] = flushed_records_of(ledger_server, request_id)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 8
    assert row["owner"] == account.user_id
    assert row["key_id"] == account.key_id
    assert row["route"] == "/v1/chat/completions"
    assert row["background"] is False
    assert (row["model_requested"], row["model_served"], row["provider"]) == (ALIAS, LOCAL, "local")
    assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, 8)
    assert row["cost_usd"] == pytest.approx(cost(LOCAL_PRICE, usage.prompt_tokens, 8), rel=1e-12)
    assert row["cost_usd"] > 0
    assert (row["status_code"], row["error_code"], row["upstream_attempts"]) == (200, None, 0)
    assert row["metadata"] == {"feature": "auto_reply"}
    assert 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["latency_ms"] < (time.time() - sent_at) * 1000
    assert sent_at - 1 <= row["created_at"] <= time.time()
    assert row["day"] == utc_day(row["created_at"])


def test_a_streamed_request_costs_exactly_what_the_same_plain_request_costs(ledger_server, account):
    sdk = sdk_for(ledger_server, account.key)
    plain_id, streamed_id = new_request_id(), new_request_id()
    plain = sdk.chat.completions.create(**SAME_EVERY_TIME, extra_headers={"x-request-id": plain_id})
    with sdk.chat.completions.create(
        **SAME_EVERY_TIME, stream=True, extra_headers={"x-request-id": streamed_id}
    ) as stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == plain.choices[0].message.content  # the same tokens

    [plain_row] = flushed_records_of(ledger_server, plain_id)
    [streamed_row] = flushed_records_of(ledger_server, streamed_id)
    for name in ("input_tokens", "output_tokens", "cost_usd", "model_served", "status_code"):
        assert streamed_row[name] == plain_row[name], name
    assert streamed_row["cost_usd"] > 0
    assert streamed_row["ttft_ms"] is not None
    assert 0 < streamed_row["ttft_ms"] <= streamed_row["latency_ms"]


def test_an_unknown_model_is_recorded_as_a_404_costing_nothing(ledger_server, account):
    request_id = new_request_id()
    with pytest.raises(openai.NotFoundError):
        sdk_for(ledger_server, account.key).chat.completions.create(
            model="no-such-model",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-request-id": request_id},
        )
    [row] = flushed_records_of(ledger_server, request_id)
    assert (row["status_code"], row["error_code"]) == (404, "model_not_found")
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        "no-such-model",
        None,
        None,
    )
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (0, 0, 0.0)
    assert row["ttft_ms"] is None
    assert (row["owner"], row["key_id"]) == (account.user_id, account.key_id)


def test_a_prompt_too_long_is_recorded_as_a_400(ledger_server, account):
    request_id = new_request_id()
    with pytest.raises(openai.BadRequestError):
        sdk_for(ledger_server, account.key).chat.completions.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "lighthouse " * 3000}],  # over 2048 tokens
            extra_headers={"x-request-id": request_id},
        )
    [row] = flushed_records_of(ledger_server, request_id)
    assert (row["status_code"], row["error_code"]) == (400, "context_length_exceeded")
    assert row["model_requested"] == ALIAS
    assert (row["output_tokens"], row["cost_usd"], row["ttft_ms"]) == (0, 0.0, None)


def test_an_upstream_that_is_down_is_recorded_as_a_503_with_its_attempts(ledger_server, account):
    request_id = new_request_id()
    with pytest.raises(openai.InternalServerError) as raised:
        sdk_for(ledger_server, account.key).chat.completions.create(
            model="remote-down",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-request-id": request_id},
        )
    assert raised.value.status_code == 503
    [row] = flushed_records_of(ledger_server, request_id)
    assert (row["status_code"], row["error_code"]) == (503, "upstream_unavailable")
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        "remote-down",
        "remote-down",
        "openai",
    )
    assert row["upstream_attempts"] == 2  # max_retries = 1
    assert (row["output_tokens"], row["cost_usd"], row["ttft_ms"]) == (0, 0.0, None)


def test_a_stream_from_an_upstream_that_is_down_is_recorded_as_failed(ledger_server, account):
    request_id = new_request_id()
    with httpx.stream(
        "POST",
        f"{ledger_server.api_url}/chat/completions",
        json={
            "model": "remote-down",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
        headers={**bearer(account.key), "x-request-id": request_id},
        timeout=60,
    ) as response:
        response.read()
    [row] = flushed_records_of(ledger_server, request_id)
    # Whether or not the 200 of the stream had been sent, the record says how it ended.
    assert (row["status_code"], row["error_code"]) == (503, "upstream_unavailable")
    assert row["upstream_attempts"] == 2


def test_a_fallback_records_the_model_that_answered_and_the_failed_attempts(ledger_server, account):
    request_id = new_request_id()
    completion = sdk_for(ledger_server, account.key).chat.completions.create(
        model="remote-flaky",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        logit_bias=NO_END,
        extra_headers={"x-request-id": request_id},
    )
    assert completion.model == LOCAL
    [row] = flushed_records_of(ledger_server, request_id)
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        "remote-flaky",
        LOCAL,
        "local",
    )
    assert row["upstream_attempts"] == 2  # the down upstream's, before the fallback
    assert (row["status_code"], row["error_code"]) == (200, None)
    usage = completion.usage
    assert usage is not None
    assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, 4)
    assert row["cost_usd"] == pytest.approx(cost(LOCAL_PRICE, usage.prompt_tokens, 4), rel=1e-12)
    assert row["ttft_ms"] is not None


def test_an_upstream_model_is_priced_from_the_configuration(ledger_server, account):
    request_id = new_request_id()
    completion = sdk_for(ledger_server, account.key).chat.completions.create(
        model="remote-ok",
        messages=[{"role": "user", "content": "three words here"}],
        metadata={"feature": "summary"},
        extra_headers={"x-request-id": request_id},
    )
    [row] = flushed_records_of(ledger_server, request_id)
    usage = completion.usage
    assert usage is not None
    # The fake counts words: 3 in, "Fake reply to: three words here" out.
    assert (row["input_tokens"], row["output_tokens"]) == (3, 6)
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 6)
    assert (row["model_served"], row["provider"], row["upstream_attempts"]) == (
        "remote-ok",
        "openai",
        1,
    )
    assert row["cost_usd"] == pytest.approx(cost(REMOTE_PRICE, 3, 6), rel=1e-12)
    assert row["metadata"] == {"feature": "summary"}


def test_a_background_response_is_recorded_once_by_its_job(ledger_server, account):
    request_id = new_request_id()
    http = httpx.Client(
        base_url=ledger_server.base_url,
        headers={**bearer(account.key), "x-request-id": request_id},
        timeout=60,
    )
    with http:
        queued = http.post(
            "/v1/responses",
            json={
                "model": ALIAS,
                "input": "What is 2+2?",
                "background": True,
                "max_output_tokens": 16,
                "temperature": 0,
                "metadata": {"feature": "batch"},
            },
        )
        assert queued.status_code == 200, queued.text
        response_id = queued.json()["id"]

        def ended() -> dict[str, Any] | None:
            body = http.get(f"/v1/responses/{response_id}").json()
            return body if body["status"] in {"completed", "incomplete", "failed"} else None

        done = wait_until(ended, timeout=60, what="the background response to end")

    assert done["status"] in {"completed", "incomplete"}, done
    # Exactly one: the enqueue's own request left none, the job's end wrote this one.
    [row] = flushed_records_of(ledger_server, request_id)
    assert row["background"] is True
    assert row["route"] == "/v1/responses"
    assert (row["owner"], row["key_id"]) == (account.user_id, account.key_id)
    assert (row["model_requested"], row["model_served"]) == (ALIAS, LOCAL)
    assert (row["status_code"], row["error_code"]) == (200, None)
    assert row["metadata"] == {"feature": "batch"}
    usage = done["usage"]
    assert (row["input_tokens"], row["output_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert row["cost_usd"] == pytest.approx(
        cost(LOCAL_PRICE, usage["input_tokens"], usage["output_tokens"]), rel=1e-12
    )
    assert row["ttft_ms"] is not None


def test_records_are_written_when_the_server_stops_cleanly(
    tmp_path: Path, backend_env: dict[str, str | None]
):
    started = time.monotonic()
    server = start_server(tmp_path / "home", env={**backend_env, **SLOW_FLUSH})
    try:
        sdk = sdk_for(server, MASTER_KEY)
        ids = [new_request_id(), new_request_id()]
        sdk.chat.completions.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=2,
            extra_headers={"x-request-id": ids[0]},
        )
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(
                model="no-such-model",
                messages=[{"role": "user", "content": "Hi"}],
                extra_headers={"x-request-id": ids[1]},
            )
        # Still in memory: the first periodic write is 60 s after the start.
        if time.monotonic() - started < 50:
            assert records_of(server, ids[0]) == [] and records_of(server, ids[1]) == []
    finally:
        stop_server(server)
    # uvicorn ends a graceful stop by re-raising SIGTERM: the log says it was one.
    messages = [line.get("message") for line in server.log_lines()]
    assert "Application shutdown complete." in messages
    assert [len(records_of(server, request_id)) for request_id in ids] == [1, 1]
    [ok] = records_of(server, ids[0])
    [refused] = records_of(server, ids[1])
    assert (ok["status_code"], ok["output_tokens"], ok["owner"]) == (200, 2, "admin")
    assert (refused["status_code"], refused["error_code"]) == (404, "model_not_found")
    [written] = [
        line
        for line in server.log_lines()
        if line.get("message") == "usage records written at shutdown"
    ]
    assert written["records"] == 2
