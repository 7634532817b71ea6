"""Huge requests are refused or served without holding up anyone else (docs/api.md, "Request
limits"): while they are read, validated, rendered and tokenized, `/health` keeps answering.

Each hostile body is encoded before the clock starts and sent as bytes, so the test process's
own JSON work cannot show up in the latencies measured from its polling thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from support import MASTER_KEY, RunningServer

MODEL = "smollm2-135m-instruct"
HI = {"role": "user", "content": "hi"}
# A stall is a second or more (validating 100k entries holds the GIL ~1 s); 0.25 s leaves room
# for a loaded 2-core CI machine without letting a stall through.
HEALTH_P99_LIMIT_S = 0.25


class HealthPoller:
    """Polls /health on a kept-alive connection every 10 ms and keeps each latency."""

    def __init__(self, server: RunningServer):
        self._client = httpx.Client(base_url=server.base_url, timeout=30)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            answer = self._client.get("/health")
            self.latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200
            self._stop.wait(0.01)

    @contextmanager
    def running(self) -> Iterator[HealthPoller]:
        self._client.get("/health")  # the connection is open before the first measure
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self._client.close()

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def post(http: httpx.Client, path: str, body: dict[str, Any] | bytes) -> httpx.Response:
    return http.post(
        path,
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def conversation_id(http: httpx.Client) -> str:
    return http.post("/v1/conversations", json={}).json()["id"]


HOSTILE = {
    # Over the list limits: refused by count, before any model work.
    "chat, 100,000 messages": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [HI] * 100_000},
        "array_above_max_length",
    ),
    "responses, 100,000 input items": (
        "/v1/responses",
        {"model": MODEL, "input": [HI] * 100_000},
        "array_above_max_length",
    ),
    "seed route, 100,000 messages": (
        "/api/ai/chat/completions",
        {"model": MODEL, "messages": [HI] * 100_000},
        "Invalid 'messages': array too long",
    ),
    "one message of 1,000 parts and one more": (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 1_001}],
        },
        "array_above_max_length",
    ),
    "100 messages of 600 parts: 60,000 entries in all": (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 600}] * 100,
        },
        "more than 50000 array entries in all",
    ),
    # Within the limits, too long for the context window: rendered and tokenized, then refused.
    "chat, 10,000 messages": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [HI] * 10_000},
        "context_length_exceeded",
    ),
    "responses, 10,000 input items": (
        "/v1/responses",
        {"model": MODEL, "input": [HI] * 10_000},
        "context_length_exceeded",
    ),
    # Special tokens by the thousand: the tokenizer's slowest input, and past its bound.
    "600 kB of special tokens": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "<|im_start|>" * 50_000}]},
        "context_length_exceeded",
    ),
    "3 MB of special tokens": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "<|im_start|>" * 250_000}]},
        "context_length_exceeded",
    ),
}


def test_health_stays_fast_while_huge_requests_are_refused(
    server: RunningServer, http: httpx.Client, conversation_id: str
):
    cases = {
        **HOSTILE,
        "conversation items, 100,000": (
            f"/v1/conversations/{conversation_id}/items",
            {"items": [{"type": "message", **HI}] * 100_000},
            "array_above_max_length",
        ),
    }
    encoded = {name: json.dumps(body).encode() for name, (_, body, _) in cases.items()}
    answers: dict[str, httpx.Response] = {}
    with HealthPoller(server).running() as poller:
        for name, (path, _, _) in cases.items():
            answers[name] = post(http, path, encoded[name])
    for name, (_, _, expected) in cases.items():
        assert answers[name].status_code == 400, name
        assert expected in answers[name].text, (name, answers[name].text[:300])
    assert len(poller.latencies) >= 20  # it measured while the requests ran
    assert poller.p99() < HEALTH_P99_LIMIT_S, sorted(poller.latencies)[-5:]


def test_an_over_long_list_is_named_in_openai_words(http: httpx.Client):
    answer = post(http, "/v1/chat/completions", {"model": MODEL, "messages": [HI] * 10_001})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "message": "Invalid 'messages': array too long. Expected an array with maximum length "
        "10000, but got an array with length 10001 instead.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "array_above_max_length",
    }


def test_auto_truncation_of_ten_thousand_items_answers(server: RunningServer, http: httpx.Client):
    """Dropped by their share of the excess, not one try a message (10,000 tokenizations)."""
    items = [{"role": "user", "content": f"note {i}"} for i in range(10_000)]
    body = {"model": MODEL, "input": items, "truncation": "auto", "max_output_tokens": 16}
    encoded = json.dumps(body).encode()
    with HealthPoller(server).running() as poller:
        answer = post(http, "/v1/responses", encoded)
    assert answer.status_code == 200, answer.text[:300]
    response = answer.json()
    assert response["status"] in ("completed", "incomplete")
    assert 0 < response["usage"]["input_tokens"] <= 8192 - 16
    assert poller.p99() < HEALTH_P99_LIMIT_S, sorted(poller.latencies)[-5:]
