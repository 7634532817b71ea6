"""A key's and a user's own content policy through the admin API (`PUT …/safety`, `safety` on
key creation), on SQLite and PostgreSQL servers: what is stored and shown, clearing, the 400s
naming the field, and that nobody but an admin may set one — their own included."""

from __future__ import annotations

from collections.abc import Iterator

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
)

PASSWORD = "correct horse battery"


@pytest.fixture
def admin_http(stored_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stored_server.base_url, headers=bearer(MASTER_KEY), timeout=30
    ) as http:
        yield http


def new_key(http: httpx.Client, email: str, **fields: object) -> dict:
    created = http.post("/v1/admin/keys", json={"email": email, **fields})
    assert created.status_code == 201, created.text
    return created.json()


def listed_key(http: httpx.Client, email: str, key_id: str) -> dict:
    listing = http.get("/v1/admin/keys", params={"email": email}).json()["data"]
    return next(key for key in listing if key["id"] == key_id)


def listed_user(http: httpx.Client, email: str) -> dict:
    listing = http.get("/v1/admin/users").json()["data"]
    return next(user for user in listing if user["email"] == email)


def test_a_key_is_created_with_a_policy_and_shows_it(
    stored_server: RunningServer, admin_http: httpx.Client
) -> None:
    email = new_email("safety-create")
    admin_add_user(stored_server, email, PASSWORD)
    created = new_key(admin_http, email, safety={"moderation": "block", "pii": "redact"})
    assert created["safety"] == {"moderation": "block", "pii": "redact"}
    assert created["rate_limits"] == {}
    assert listed_key(admin_http, email, created["id"])["safety"] == created["safety"]
    plain = new_key(admin_http, email)
    assert plain["safety"] == {}  # none of its own: the configured policy
    # The key authenticates with its policy read alongside it.
    models = httpx.get(
        f"{stored_server.base_url}/v1/models", headers=bearer(created["key"]), timeout=30
    )
    assert models.status_code == 200, models.text


def test_a_keys_policy_is_set_replaced_and_cleared(
    stored_server: RunningServer, admin_http: httpx.Client
) -> None:
    email = new_email("safety-key")
    admin_add_user(stored_server, email, PASSWORD)
    key = new_key(admin_http, email, safety={"pii": "flag"})
    path = f"/v1/admin/keys/{key['id']}/safety"

    changed = admin_http.put(path, json={"moderation": "score"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["object"] == "api_key" and body["id"] == key["id"] and "key" not in body
    assert body["safety"] == {"moderation": "score"}  # replaces its earlier own values
    assert listed_key(admin_http, email, key["id"])["safety"] == {"moderation": "score"}
    # A null field is the same as leaving it out.
    assert admin_http.put(path, json={"moderation": None, "pii": "redact"}).json()["safety"] == {
        "pii": "redact"
    }

    cleared = admin_http.put(path, json={})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["safety"] == {}
    assert listed_key(admin_http, email, key["id"])["safety"] == {}
    assert_error_envelope(admin_http.put("/v1/admin/keys/key_nope/safety", json={}), 404)


def test_a_users_policy_is_set_and_cleared(
    stored_server: RunningServer, admin_http: httpx.Client
) -> None:
    email = new_email("safety-user")
    admin_add_user(stored_server, email, PASSWORD)
    path = f"/v1/admin/users/{email.upper()}/safety"  # e-mails in any case
    changed = admin_http.put(path, json={"moderation": "block", "pii": "redact"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["object"] == "user" and body["email"] == email
    assert body["safety"] == {"moderation": "block", "pii": "redact"}
    assert listed_user(admin_http, email)["safety"] == body["safety"]
    # A user's login still works with the policy read alongside the account.
    models = httpx.get(
        f"{stored_server.base_url}/v1/models", headers=basic_auth(email, PASSWORD), timeout=30
    )
    assert models.status_code == 200, models.text

    assert admin_http.put(path, json={}).json()["safety"] == {}
    assert listed_user(admin_http, email)["safety"] == {}
    unknown = admin_http.put("/v1/admin/users/nobody@example.com/safety", json={})
    assert_error_envelope(unknown, 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"moderation": "strict"}, "moderation"),
        ({"moderation": "BLOCK"}, "moderation"),
        ({"pii": "mask"}, "pii"),
        ({"pii": True}, "pii"),
        ({"moderation": "block", "toxicity": "block"}, "toxicity"),
    ],
    ids=["moderation", "case", "pii", "pii-type", "unknown-field"],
)
def test_an_invalid_policy_is_a_400_naming_the_field(
    stored_server: RunningServer, admin_http: httpx.Client, body: dict, param: str
) -> None:
    email = new_email("safety-bad")
    admin_add_user(stored_server, email, PASSWORD)
    key = new_key(admin_http, email, safety={"pii": "flag"})
    for path in (f"/v1/admin/keys/{key['id']}/safety", f"/v1/admin/users/{email}/safety"):
        error = assert_error_envelope(admin_http.put(path, json=body), 400, param=param)
        assert param in error["message"]
    refused = admin_http.post("/v1/admin/keys", json={"email": email, "safety": body})
    assert_error_envelope(refused, 400, param=f"safety.{param}")
    # Nothing changed, and no key was made.
    assert listed_key(admin_http, email, key["id"])["safety"] == {"pii": "flag"}
    assert listed_user(admin_http, email)["safety"] == {}
    assert len(admin_http.get("/v1/admin/keys", params={"email": email}).json()["data"]) == 1


def test_a_body_that_is_not_an_object_is_a_400(
    stored_server: RunningServer, admin_http: httpx.Client
) -> None:
    email = new_email("safety-shape")
    admin_add_user(stored_server, email, PASSWORD)
    for body in ("block", ["block"], None):
        assert_error_envelope(admin_http.put(f"/v1/admin/users/{email}/safety", json=body), 400)


def test_a_non_admin_cannot_set_a_policy_not_even_their_own(
    stored_server: RunningServer, admin_http: httpx.Client
) -> None:
    email = new_email("safety-self")
    admin_add_user(stored_server, email, PASSWORD)
    secret = admin_create_key(stored_server, email)
    key_id = admin_http.get("/v1/admin/keys", params={"email": email}).json()["data"][0]["id"]
    admin_http.put(f"/v1/admin/keys/{key_id}/safety", json={"moderation": "block"})
    admin_http.put(f"/v1/admin/users/{email}/safety", json={"pii": "redact"})

    for credentials in (bearer(secret), basic_auth(email, PASSWORD)):
        for path in (f"/v1/admin/keys/{key_id}/safety", f"/v1/admin/users/{email}/safety"):
            weakened = httpx.put(
                stored_server.base_url + path,
                json={"moderation": "off", "pii": "off"},
                headers=credentials,
                timeout=30,
            )
            error = assert_error_envelope(weakened, 404)  # the admin API is not advertised
            assert error["message"] == f"Unknown request URL: PUT {path}"
    assert listed_key(admin_http, email, key_id)["safety"] == {"moderation": "block"}
    assert listed_user(admin_http, email)["safety"] == {"pii": "redact"}
    anonymous = httpx.put(
        f"{stored_server.base_url}/v1/admin/users/{email}/safety", json={}, timeout=30
    )
    assert_error_envelope(anonymous, 401, code="missing_api_key")
