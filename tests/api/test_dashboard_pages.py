"""The dashboard over plain HTTP against a real server: sign-in and its cookie, CSRF on every
form, what a user and an admin see, re-labelling, keys, and pages that fetch nothing from
elsewhere. (tests/browser drives the same pages in Chromium.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard_support import (
    admin_client,
    csrf_of,
    next_link,
    row_ids,
    sign_in,
    signed_in,
    store_completion,
)
from support import MASTER_KEY, RunningServer, bearer, start_server, stop_server
from usage_support import Account, new_account, usage_data

PAGES = (
    "/dashboard/requests",
    "/dashboard/usage",
    "/dashboard/budgets",
    "/dashboard/keys",
    "/dashboard/jobs",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The tests play a TLS-terminating proxy on this host (X-Forwarded-Proto).
    trusted = {"AISERVICE_TRUSTED_PROXIES": '["127.0.0.1"]'}
    running = start_server(tmp_path_factory.mktemp("dashboard"), env=trusted)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def alice(server: RunningServer) -> Account:
    return new_account(server, "alice")


@pytest.fixture(scope="module")
def bob(server: RunningServer) -> Account:
    return new_account(server, "bob")


@pytest.fixture(scope="module")
def stored(server: RunningServer, alice: Account, bob: Account) -> dict[str, list[str]]:
    """Alice's three completions (two for feature reply) and Bob's one."""
    features = ["reply", "reply", "summarize"]
    return {
        "alice": [store_completion(server, alice.key, {"feature": f})["id"] for f in features],
        "bob": [store_completion(server, bob.key, {"feature": "reply"})["id"]],
    }


def test_signed_out_pages_send_the_browser_to_the_sign_in_form(server: RunningServer) -> None:
    for path in (*PAGES, "/dashboard/health", "/dashboard/requests/chatcmpl-x"):
        answer = httpx.get(server.base_url + path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/dashboard/login?next=")
    assert httpx.get(f"{server.base_url}/dashboard").headers["location"] == "/dashboard/requests"


def test_sign_in_sets_an_http_only_same_site_cookie_on_the_dashboard_path(
    server: RunningServer, alice: Account
) -> None:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    answer = sign_in(client, email=alice.email, password="password-1234")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/requests"
    cookie = next(
        value
        for name, value in answer.headers.multi_items()
        if name == "set-cookie" and value.startswith("aiservice_session=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/dashboard", "samesite=lax"} <= flags
    assert "secure" not in flags  # plain HTTP here; over TLS, see the next test
    assert client.get("/dashboard/requests").status_code == 200


def test_the_cookie_is_secure_when_the_browser_came_over_tls(
    server: RunningServer, alice: Account
) -> None:
    # A TLS-terminating proxy on this host says so (the server trusts 127.0.0.1: see above).
    tls = {"x-forwarded-proto": "https"}
    form = httpx.get(f"{server.base_url}/dashboard/login", headers=tls)
    assert "secure" in form.headers["set-cookie"].lower()
    # httpx keeps Secure cookies off plain HTTP, as a browser would: hand it back itself.
    answer = httpx.post(
        f"{server.base_url}/dashboard/login",
        headers=tls,
        cookies={"aiservice_login_csrf": form.cookies["aiservice_login_csrf"]},
        data={"csrf_token": csrf_of(form), "api_key": alice.key},
    )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_wrong_credentials_show_the_form_again_and_are_throttled(
    server: RunningServer, bob: Account
) -> None:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    statuses = [sign_in(client, email=bob.email, password="wrong").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    refused = sign_in(client, email=bob.email, password="password-1234")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert 'name="email"' in refused.text  # the form, with the reason
    assert sign_in(client, api_key="sk-not-a-key").status_code == 401


def test_a_sign_in_without_its_csrf_token_is_refused(server: RunningServer, alice: Account) -> None:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    client.get("/dashboard/login")  # the login cookie is there, the field is not
    answer = client.post("/dashboard/login", data={"api_key": alice.key})
    assert answer.status_code == 403 and 'data-error-code="csrf_token_invalid"' in answer.text
    forged = client.post("/dashboard/login", data={"api_key": alice.key, "csrf_token": "x" * 32})
    assert forged.status_code == 403


def test_a_user_sees_their_own_requests_and_not_another_users(
    server: RunningServer, alice: Account, stored: dict[str, list[str]]
) -> None:
    client = signed_in(server, api_key=alice.key)
    assert row_ids(client.get("/dashboard/requests")) == list(reversed(stored["alice"]))
    replies = client.get("/dashboard/requests", params={"feature": "reply"})
    assert row_ids(replies) == list(reversed(stored["alice"][:2]))
    # Filters the page does not let a user use are ignored, not obeyed.
    assert row_ids(client.get("/dashboard/requests", params={"user": "anyone"})) == row_ids(
        client.get("/dashboard/requests")
    )
    other = client.get(f"/dashboard/requests/{stored['bob'][0]}")
    assert other.status_code == 404 and 'data-status="404"' in other.text
    own = client.get(f"/dashboard/requests/{stored['alice'][0]}")
    assert own.status_code == 200 and "Say hello." in own.text


def test_an_admin_sees_everyone_and_filters_by_user_and_key(
    server: RunningServer, alice: Account, bob: Account, stored: dict[str, list[str]]
) -> None:
    client = admin_client(server)
    everyone = set(row_ids(client.get("/dashboard/requests")))
    assert set(stored["alice"]) | set(stored["bob"]) <= everyone
    by_user = client.get("/dashboard/requests", params={"user": bob.user_id})
    assert row_ids(by_user) == stored["bob"]
    by_key = client.get("/dashboard/requests", params={"key": alice.key_id, "feature": "reply"})
    assert row_ids(by_key) == list(reversed(stored["alice"][:2]))
    page = client.get(f"/dashboard/requests/{stored['bob'][0]}")
    assert page.status_code == 200 and bob.key_id in page.text


def test_the_log_pages_by_cursor_and_keeps_the_filter(
    server: RunningServer, alice: Account, stored: dict[str, list[str]]
) -> None:
    client = admin_client(server)
    first = client.get(
        "/dashboard/requests", params={"feature": "reply", "kind": "chat.completion"}
    )
    assert next_link(first) is None  # three replies in all: one page
    bad = client.get("/dashboard/requests", params={"after": "nonsense"})
    assert bad.status_code == 400
    bad_date = client.get("/dashboard/requests", params={"since": "yesterday"})
    assert bad_date.status_code == 400 and 'data-status="400"' in bad_date.text


def test_relabelling_needs_the_csrf_token_and_changes_the_stored_metadata(
    server: RunningServer, alice: Account, stored: dict[str, list[str]]
) -> None:
    client = signed_in(server, api_key=alice.key)
    completion_id = stored["alice"][2]
    page = client.get(f"/dashboard/requests/{completion_id}")
    path = f"/dashboard/requests/{completion_id}/metadata"
    form = {"key_0": "feature", "value_0": "summarize", "key_1": "label", "value_1": "checked"}
    assert client.post(path, data=form).status_code == 403
    saved = client.post(path, data={**form, "csrf_token": csrf_of(page)})
    assert saved.status_code == 303
    answer = httpx.get(
        f"{server.api_url}/chat/completions/{completion_id}", headers=bearer(alice.key)
    )
    assert answer.json()["metadata"] == {"feature": "summarize", "label": "checked"}
    # Another user's request cannot be re-labelled either.
    other = client.post(
        f"/dashboard/requests/{stored['bob'][0]}/metadata",
        data={**form, "csrf_token": csrf_of(page)},
    )
    assert other.status_code == 404


def test_the_usage_table_has_the_numbers_of_the_usage_api(
    server: RunningServer, alice: Account, stored: dict[str, list[str]]
) -> None:
    client = signed_in(server, api_key=alice.key)
    page = client.get("/dashboard/usage", params={"group": "model", "measure": "requests"})
    assert page.status_code == 200 and "<svg" in page.text
    shown = {
        group: int(requests)
        for group, requests in re.findall(r'data-group="([^"]*)" data-requests="(\d+)"', page.text)
    }
    api = usage_data(server, alice.key, since="30d", group_by="model")
    assert shown == {row["model"]: row["requests"] for row in api}
    assert sum(shown.values()) >= len(stored["alice"])


def test_admins_create_and_revoke_keys_users_may_not(
    server: RunningServer, alice: Account, bob: Account
) -> None:
    admin = admin_client(server)
    page = admin.get("/dashboard/keys")
    created = admin.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(page), "email": bob.email, "name": "made-here", "rpm": "30"},
    )
    assert created.status_code == 200
    secret = re.search(r'id="new-key" class="secret" readonly value="([^"]+)"', created.text)
    key_id = re.search(r'data-key-id="([^"]+)"', created.text)
    assert secret and key_id
    assert httpx.get(f"{server.api_url}/models", headers=bearer(secret.group(1))).status_code == 200
    assert secret.group(1) not in admin.get("/dashboard/keys").text  # shown once only
    revoked = admin.post(
        f"/dashboard/keys/{key_id.group(1)}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert revoked.status_code == 303
    assert httpx.get(f"{server.api_url}/models", headers=bearer(secret.group(1))).status_code == 401
    user = signed_in(server, api_key=alice.key)
    user_page = user.get("/dashboard/keys")
    assert alice.key_id in user_page.text and bob.key_id not in user_page.text
    refused = user.post(
        "/dashboard/keys", data={"csrf_token": csrf_of(user_page), "email": bob.email}
    )
    assert refused.status_code == 403
    assert user.get("/dashboard/health").status_code == 403
    assert admin.get("/dashboard/health").status_code == 200


def test_a_revoked_key_or_a_sign_out_ends_the_session(server: RunningServer) -> None:
    account = new_account(server, "carol")
    client = signed_in(server, api_key=account.key)
    assert client.get("/dashboard/requests").status_code == 200
    httpx.delete(
        f"{server.api_url}/admin/keys/{account.key_id}", headers=bearer(MASTER_KEY)
    ).raise_for_status()
    assert client.get("/dashboard/requests").status_code == 303
    other = signed_in(server, email=account.email, password="password-1234")
    page = other.get("/dashboard/requests")
    cookie = other.cookies.get("aiservice_session")
    assert other.post("/dashboard/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    replay = httpx.get(
        f"{server.base_url}/dashboard/requests", cookies={"aiservice_session": cookie or ""}
    )
    assert replay.status_code == 303  # the old cookie is worth nothing now


def test_every_page_fetches_nothing_from_elsewhere_and_forbids_inline_scripts(
    server: RunningServer, alice: Account
) -> None:
    client = admin_client(server)
    for path in (*PAGES, "/dashboard/health", "/dashboard/login"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert not re.search(r'(src|href)="(https?:)?//', page.text), path
        assert "<script>" not in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["cache-control"] == "no-store"
    for asset in ("/dashboard/static/dashboard.css", "/dashboard/static/dashboard.js"):
        assert client.get(asset).status_code == 200


def test_sign_in_goes_back_to_the_page_asked_for_but_never_elsewhere(
    server: RunningServer, alice: Account
) -> None:
    for asked, landed in (
        ("/dashboard/usage", "/dashboard/usage"),
        ("//evil.example/x", "/dashboard/requests"),
        ("https://evil.example/", "/dashboard/requests"),
    ):
        client = httpx.Client(base_url=server.base_url, timeout=30)
        answer = sign_in(client, api_key=alice.key, next=asked)
        assert answer.headers["location"] == landed


def test_sessions_are_shared_by_servers_on_one_postgresql(
    tmp_path: Path, postgres_databases, alice: Account
) -> None:
    url = postgres_databases.create()
    env = {"AISERVICE_DATABASE_URL": url}
    first = start_server(tmp_path / "a", env=env)
    second = start_server(tmp_path / "b", env=env, args=["--no-worker"])
    try:
        client = signed_in(first, api_key=MASTER_KEY)
        cookie = client.cookies["aiservice_session"]
        elsewhere = httpx.Client(base_url=second.base_url, cookies={"aiservice_session": cookie})
        page = elsewhere.get("/dashboard/requests")
        assert page.status_code == 200
        assert (
            client.post("/dashboard/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
        )
        assert elsewhere.get("/dashboard/requests").status_code == 303
    finally:
        stop_server(second)
        stop_server(first)


def test_the_filter_forms_keep_their_csrf_token_out_of_the_address(
    server: RunningServer, alice: Account
) -> None:
    client = signed_in(server, api_key=alice.key)
    for path, fields in (
        ("/dashboard/requests", {"feature": "reply", "model": "", "kind": "chat.completion"}),
        ("/dashboard/usage", {"group": "feature", "measure": "requests", "since": "2026-11-01"}),
    ):
        assert client.post(path, data=fields).status_code == 403
        token = csrf_of(client.get(path))
        answer = client.post(path, data={**fields, "csrf_token": token})
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith(path + "?") and "csrf_token" not in location
        kept = {name: value for name, value in fields.items() if value}
        assert all(f"{name}={value}" in location for name, value in kept.items())
        assert client.get(location).status_code == 200
