"""Authentication: every /v1 route wants the Bearer master key; health probes want nothing."""

from __future__ import annotations

import httpx
import pytest

from support import MASTER_KEY, RunningServer, assert_error_envelope, wait_until

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
PROTECTED = [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/v1/models/gpt-4o")]


def call(server: RunningServer, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    json = CHAT if method == "POST" else None
    return httpx.request(method, server.base_url + path, json=json, headers=headers, timeout=60)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_authorization_header_is_401(server: RunningServer, method: str, path: str) -> None:
    error = assert_error_envelope(call(server, method, path, {}), 401, param=None)
    assert error["code"] == "missing_api_key"
    assert "API key" in error["message"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_wrong_key_is_401_invalid_api_key(server: RunningServer, method: str, path: str) -> None:
    response = call(server, method, path, {"Authorization": "Bearer sk-wrong-key"})
    assert_error_envelope(response, 401, param=None, code="invalid_api_key")


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {MASTER_KEY}",
        f"Token {MASTER_KEY}",
        MASTER_KEY,  # the key alone, no scheme
        "Bearer",
        f"Bearer{MASTER_KEY}",
        f"Bearer {MASTER_KEY}x",
        f"Bearer {MASTER_KEY[:-1]}",
    ],
    ids=[
        "basic",
        "token",
        "no-scheme",
        "bearer-no-key",
        "no-space",
        "key-with-suffix",
        "key-prefix",
    ],
)
def test_malformed_or_non_bearer_authorization_is_401(
    server: RunningServer, authorization: str
) -> None:
    response = call(server, "POST", "/v1/chat/completions", {"Authorization": authorization})
    assert_error_envelope(response, 401, param=None, code="invalid_api_key")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(server: RunningServer, scheme: str) -> None:
    response = call(server, "GET", "/v1/models", {"Authorization": f"{scheme} {MASTER_KEY}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_probes_need_no_key(server: RunningServer, path: str) -> None:
    response = httpx.get(server.base_url + path, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in {"ok", "ready"}
    wrong = httpx.get(server.base_url + path, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 200


def test_the_401_never_echoes_the_presented_key(server: RunningServer) -> None:
    presented = "sk-presented-secret-0123456789abcdef"
    responses = [
        call(server, "POST", "/v1/chat/completions", {"Authorization": f"Bearer {presented}"}),
        call(server, "GET", "/v1/models", {"Authorization": f"Basic {presented}"}),
        call(server, "GET", "/v1/models", {"Authorization": presented}),
    ]
    for response in responses:
        assert response.status_code == 401
        assert presented not in response.text
        assert "0123456789abcdef" not in response.text
        assert all(presented not in value for value in response.headers.values())
    request_ids = [r.headers["x-request-id"] for r in responses]

    # Nor is it logged: wait for the three access lines, then search every line.
    def logged() -> bool:
        ids = {line.get("request_id") for line in server.log_lines()}
        return all(request_id in ids for request_id in request_ids)

    wait_until(logged, timeout=10, what="the access lines of the refused requests")
    assert presented not in server.log_path.read_text(encoding="utf-8")


def test_a_refused_request_does_not_reach_validation(server: RunningServer) -> None:
    """Authentication comes before validation: a bad key with an invalid body is a 401."""
    response = httpx.post(
        server.base_url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [], "temperature": 9, "foo": 1},
        headers={"Authorization": "Bearer wrong"},
        timeout=10,
    )
    assert_error_envelope(response, 401, code="invalid_api_key")


@pytest.mark.parametrize("body", [b"{not json", b"x" * 100_000])
def test_authentication_is_checked_before_the_body_is_parsed(
    server: RunningServer, body: bytes
) -> None:
    response = httpx.post(
        server.base_url + "/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-wrong-key"},
        timeout=60,
    )
    assert_error_envelope(response, 401, param=None, code="invalid_api_key")
