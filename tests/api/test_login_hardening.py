"""Failed Basic logins are throttled per account and per client address; no credential is
ever logged.

These tests run on a server of their own: the throttle counts per client address, and every
test client is 127.0.0.1 unless it binds another loopback address (127.0.0.2, …) itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import (
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    admin_create_key,
    assert_error_envelope,
    basic_auth,
    bearer,
    new_email,
    start_server,
    stop_server,
    wait_until,
)

PER_ACCOUNT = 5
PER_ADDRESS = 20


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("aiservice-logins"),
        env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None},
    )
    yield running
    stop_server(running)


def from_address(server: RunningServer, address: str) -> httpx.Client:
    """A client whose requests come from `address`, a loopback address of its own."""
    return httpx.Client(
        base_url=server.base_url,
        transport=httpx.HTTPTransport(local_address=address),
        timeout=60,
    )


def login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.get("/v1/models", headers=basic_auth(email, password))


def assert_throttled(response: httpx.Response) -> None:
    error = assert_error_envelope(response, 429, code="too_many_failed_logins")
    assert "Too many failed logins" in error["message"]
    # When to try again: within the one-minute window, never "now".
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_failures_lock_the_account_then_the_address(own_server: RunningServer) -> None:
    alice, bob, password = new_email("alice"), new_email("bob"), "the right password"
    admin_add_user(own_server, alice, password)
    admin_add_user(own_server, bob, password)
    with (
        from_address(own_server, "127.0.0.2") as here,
        from_address(own_server, "127.0.0.3") as elsewhere,
    ):
        # Successful logins are not failures.
        for _ in range(PER_ACCOUNT + 1):
            assert login(here, alice, password).status_code == 200

        for _ in range(PER_ACCOUNT):
            assert_error_envelope(
                login(here, alice, "wrong password"), 401, code="invalid_credentials"
            )
        # Alice's account is locked, for the right password too, from any address...
        assert_throttled(login(here, alice, password))
        assert_throttled(login(elsewhere, alice, password))
        assert_throttled(login(here, alice.upper(), password))  # the same account
        # ...but not her API key, and not Bob, from the same address.
        alice_key = admin_create_key(own_server, alice)
        assert here.get("/v1/models", headers=bearer(alice_key)).status_code == 200
        assert login(here, bob, password).status_code == 200

        # Failures on other accounts (unknown ones too) count against the address: the 429s
        # above did not, so PER_ADDRESS - PER_ACCOUNT more reach the limit.
        for n in range(PER_ADDRESS - PER_ACCOUNT):
            assert login(here, bob, password).status_code == 200  # under the limit still
            response = login(here, f"ghost{n}@example.com", "guess")
            assert_error_envelope(response, 401, code="invalid_credentials")
        assert_throttled(login(here, bob, password))
        assert_throttled(login(here, new_email(), "anything"))
        # Bob's account itself is fine: from another address he logs in.
        assert login(elsewhere, bob, password).status_code == 200

    # Bearer keys are not throttled by failed logins: the master key works from 127.0.0.2.
    with from_address(own_server, "127.0.0.2") as here:
        assert here.get("/v1/models", headers=bearer(MASTER_KEY)).status_code == 200


def test_no_credential_appears_in_any_log_line(own_server: RunningServer, tmp_path: Path) -> None:
    email = new_email("logcheck")
    password = "Distinctive-Passw0rd-7f3a9c"
    admin_add_user(own_server, email, password)
    key = admin_create_key(own_server, email, "log-check")
    basic_header = basic_auth(email, password)["Authorization"]
    wrong_basic = basic_auth(email, password + "-wrong")["Authorization"]
    wrong_key = key[:-6] + "ZZZZZZ"
    secrets_to_hide = [
        password,
        key,
        key[3:],
        wrong_key,
        basic_header.split(" ", 1)[1],
        wrong_basic.split(" ", 1)[1],
        password + "-wrong",
        MASTER_KEY,
    ]

    base = own_server.base_url
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(base_url=base, timeout=120) as http:
        responses = [
            http.get("/v1/models", headers=bearer(key)),
            http.get("/v1/models", headers={"Authorization": basic_header}),
            http.post(
                "/v1/chat/completions",
                json={**chat, "max_tokens": 2, "store": True},
                headers=bearer(key),
            ),
            http.get("/v1/chat/completions", headers={"Authorization": basic_header}),
            http.get("/v1/models", headers={"Authorization": wrong_basic}),
            http.get("/v1/models", headers=bearer(wrong_key)),
            http.get("/v1/models", headers={"Authorization": key}),  # no scheme
            http.post("/v1/chat/completions", json={**chat, "temperature": 9}, headers=bearer(key)),
            http.post(
                "/v1/admin/users",
                json={"email": email, "password": password},  # a duplicate: a 400
                headers=bearer(MASTER_KEY),
            ),
            http.post(
                "/v1/admin/users",
                json={"email": new_email(), "password": "short"},
                headers=bearer(MASTER_KEY),
            ),
            http.post(
                "/v1/admin/keys", json={"email": email, "name": "x"}, headers=bearer(MASTER_KEY)
            ),
            http.get("/v1/admin/keys", headers={"Authorization": basic_header}),  # not an admin
        ]
    statuses = [response.status_code for response in responses]
    assert statuses == [200, 200, 200, 200, 401, 401, 401, 400, 400, 400, 201, 404], statuses
    request_ids = {response.headers["x-request-id"] for response in responses}

    def all_logged() -> bool:
        logged = {line.get("request_id") for line in own_server.log_lines()}
        return request_ids <= logged

    wait_until(all_logged, timeout=30, what="the access lines of every request")
    text = own_server.log_path.read_text(encoding="utf-8")
    lines = own_server.log_lines()
    assert any(line.get("logger") == "aiservice.access" for line in lines)
    for secret in secrets_to_hide:
        assert secret not in text, f"a credential was logged: {secret[:4]}…"
    # Nor any Authorization header, whatever its scheme.
    for line in lines:
        flat = json.dumps(line).lower()
        assert "authorization" not in flat, line
        assert "basic " not in flat and "bearer " not in flat, line
    # And the Basic credentials not even in their decoded-and-split form.
    decoded = base64.b64decode(basic_header.split(" ", 1)[1]).decode()
    assert decoded not in text
