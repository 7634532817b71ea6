"""Request ids: echoed when sane, generated otherwise, and carried by the JSON access lines."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from support import MASTER_KEY, RunningServer, wait_for_access_line

GENERATED_ID = re.compile(r"^req_[0-9a-f]{32}$")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


def access_line(server: RunningServer, request_id: str) -> dict:
    return wait_for_access_line(server, request_id, timeout=10)


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("method", "path", "json", "status"),
    [
        ("POST", "/v1/chat/completions", CHAT, 200),
        ("POST", "/v1/chat/completions", {**CHAT, "n": 0}, 400),
        ("GET", "/health", None, 200),
        ("GET", "/v1/models", None, 200),
        ("GET", "/no/such/path", None, 404),
    ],
)
def test_a_sane_request_id_is_echoed_and_logged(
    http: httpx.Client,
    server: RunningServer,
    method: str,
    path: str,
    json: dict | None,
    status: int,
) -> None:
    request_id = unique_id("client.id:1")
    response = http.request(method, path, json=json, headers={"x-request-id": request_id})
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == request_id
    line = access_line(server, request_id)
    assert line["method"] == method
    assert line["path"] == path
    assert line["status"] == status
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0


def test_a_missing_request_id_is_generated(http: httpx.Client, server: RunningServer) -> None:
    first = http.get("/health").headers["x-request-id"]
    second = http.get("/health").headers["x-request-id"]
    assert GENERATED_ID.match(first) and GENERATED_ID.match(second)
    assert first != second
    assert access_line(server, first)["path"] == "/health"


@pytest.mark.parametrize(
    "unsafe",
    ["a" * 300, "a" * 129, "has spaces in it", 'quote"d', "semi;colon", "curly{}", "slash/ed"],
    ids=["300-chars", "129-chars", "spaces", "quote", "semicolon", "braces", "slash"],
)
def test_an_unsafe_request_id_is_replaced(
    http: httpx.Client, server: RunningServer, unsafe: str
) -> None:
    response = http.get("/health", headers={"x-request-id": unsafe})
    replaced = response.headers["x-request-id"]
    assert GENERATED_ID.match(replaced), replaced
    access_line(server, replaced)
    # The client's value reaches neither the response nor the log.
    assert unsafe not in response.text
    assert all(line.get("request_id") != unsafe for line in server.log_lines())


def test_the_longest_acceptable_request_id_is_kept(http: httpx.Client) -> None:
    longest = "b" * 128
    assert http.get("/health", headers={"x-request-id": longest}).headers["x-request-id"] == longest


def test_a_streamed_request_keeps_its_id(http: httpx.Client, server: RunningServer) -> None:
    request_id = unique_id("stream")
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"x-request-id": request_id},
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"] == request_id
        assert list(response.iter_lines())  # read to the end
    assert access_line(server, request_id)["status"] == 200


def test_concurrent_requests_keep_their_own_ids(server: RunningServer) -> None:
    """The id lives in a context variable: interleaved requests must not see each other's."""
    ids = [unique_id(f"concurrent{i}") for i in range(6)]
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=120
    ) as raw:
        streams = [
            raw.stream(
                "POST",
                "/v1/chat/completions",
                json={**CHAT, "stream": True},
                headers={"x-request-id": request_id},
            )
            for request_id in ids
        ]
        responses = [stream.__enter__() for stream in streams]
        try:
            for request_id, response in zip(ids, responses, strict=True):
                assert response.headers["x-request-id"] == request_id
                assert list(response.iter_lines())
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
    for request_id in ids:
        assert access_line(server, request_id)["status"] == 200


def test_log_lines_are_json_without_secrets_or_tracebacks(
    http: httpx.Client, server: RunningServer
) -> None:
    # Some traffic of every kind first: success, refusal, bad key, bad body, unknown URL.
    marker = unique_id("last")
    http.post("/v1/chat/completions", json=CHAT)
    http.post("/v1/chat/completions", json={**CHAT, "temperature": 7})
    http.post("/v1/chat/completions", content=b"{", headers={"content-type": "application/json"})
    httpx.get(server.base_url + "/v1/models", headers={"Authorization": "Bearer sk-bad"})
    http.get("/nowhere", headers={"x-request-id": marker})
    access_line(server, marker)

    text = server.log_path.read_text(encoding="utf-8")
    lines = server.log_lines()
    assert lines, "the server logged nothing"
    not_json = [line["raw"] for line in lines if set(line) == {"raw"}]
    assert not not_json, f"non-JSON log lines: {not_json[:5]}"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert MASTER_KEY not in text
    assert "sk-bad" not in text
    assert "Traceback" not in text and 'File "' not in text
