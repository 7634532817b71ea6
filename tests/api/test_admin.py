"""The admin API (/v1/admin/users, /v1/admin/keys): admins only, keys shown once, revocation and
disabling take effect on the very next request."""

from __future__ import annotations

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
USER_FIELDS = {"object", "id", "email", "is_admin", "disabled", "created_at", "rate_limits"}
USER_FIELDS |= {"safety", "zero_retention"}
KEY_FIELDS = {"object", "id", "name", "user_id", "email", "key_hint", "created_at", "revoked_at"}
KEY_FIELDS |= {"rate_limits", "safety", "expires_at", "successor_id", "zero_retention"}
# Every admin route, with a body where it takes one.
ADMIN_ROUTES = [
    ("POST", "/v1/admin/users", {"email": "x@example.com", "password": "long enough pw"}),
    ("GET", "/v1/admin/users", None),
    ("POST", "/v1/admin/users/x@example.com/disable", None),
    ("POST", "/v1/admin/keys", {"email": "x@example.com"}),
    ("GET", "/v1/admin/keys", None),
    ("DELETE", "/v1/admin/keys/key_0123", None),
    ("PUT", "/v1/admin/keys/key_0123/rate_limits", {"rpm": 1}),
    ("PUT", "/v1/admin/users/x@example.com/rate_limits", {"rpm": 1}),
    ("PUT", "/v1/admin/keys/key_0123/safety", {"moderation": "off"}),
    ("PUT", "/v1/admin/users/x@example.com/safety", {"pii": "off"}),
    ("GET", "/v1/admin/ratelimits", None),
    ("POST", "/v1/admin/keys/key_0123/rotate", {"grace": "1h"}),
    ("PUT", "/v1/admin/keys/key_0123/zero_retention", {"enabled": True}),
    ("PUT", "/v1/admin/users/x@example.com/zero_retention", {"enabled": True}),
    ("GET", "/v1/admin/audit", None),
]


def call(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str],
    body: object = None,
    **params: str,
) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, json=body, headers=headers, params=params, timeout=30
    )


def works(server: RunningServer, headers: dict[str, str]) -> bool:
    response = call(server, "GET", "/v1/models", headers)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def test_users_are_added_listed_and_never_show_a_password(server: RunningServer) -> None:
    email = new_email("Mixed.Case")
    response = call(
        server,
        "POST",
        "/v1/admin/users",
        bearer(MASTER_KEY),
        {"email": f"  {email} ", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == USER_FIELDS
    assert user["object"] == "user" and user["id"].startswith("user_")
    assert user["email"] == email.lower()  # stored normalised
    assert user["is_admin"] is False and user["disabled"] is False
    assert isinstance(user["created_at"], int)
    assert PASSWORD not in response.text and "argon2" not in response.text

    listing = call(server, "GET", "/v1/admin/users", bearer(MASTER_KEY))
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["object"] == "list"
    assert user in body["data"]
    assert all(set(item) == USER_FIELDS for item in body["data"])
    assert "argon2" not in listing.text and "password" not in listing.text

    # The new user logs in with Basic auth at once.
    assert works(server, basic_auth(email, PASSWORD))


def test_a_key_is_shown_once_works_at_once_and_revocation_counts_on_the_next_request(
    server: RunningServer,
) -> None:
    email = new_email()
    user = admin_add_user(server, email, PASSWORD)
    response = call(
        server, "POST", "/v1/admin/keys", bearer(MASTER_KEY), {"email": email, "name": "laptop"}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == KEY_FIELDS | {"key"}
    key = created["key"]
    assert key.startswith("sk-") and len(key) > 40
    assert created["object"] == "api_key" and created["id"].startswith("key_")
    assert created["name"] == "laptop"
    assert (created["user_id"], created["email"]) == (user["id"], email)
    assert created["revoked_at"] is None
    assert created["key_hint"].startswith("sk-") and created["key_hint"].endswith(key[-4:])
    assert works(server, bearer(key))

    # Listings show the hint, never the key.
    for params in ({}, {"email": email}):
        listing = call(server, "GET", "/v1/admin/keys", bearer(MASTER_KEY), **params)
        assert listing.status_code == 200, listing.text
        assert key not in listing.text and key[3:] not in listing.text
        mine = [item for item in listing.json()["data"] if item["id"] == created["id"]]
        assert mine == [{k: v for k, v in created.items() if k != "key"}]
    only_theirs = call(server, "GET", "/v1/admin/keys", bearer(MASTER_KEY), email=email).json()
    assert [item["email"] for item in only_theirs["data"]] == [email]

    revoked = call(server, "DELETE", f"/v1/admin/keys/{created['id']}", bearer(MASTER_KEY))
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert set(body) == KEY_FIELDS and body["id"] == created["id"]
    assert isinstance(body["revoked_at"], int)
    # The very next request with the key is refused; the user's other credentials still work.
    assert_error_envelope(
        call(server, "GET", "/v1/models", bearer(key)), 401, code="invalid_api_key"
    )
    assert works(server, basic_auth(email, PASSWORD))
    listed = call(server, "GET", "/v1/admin/keys", bearer(MASTER_KEY), email=email).json()
    assert listed["data"][0]["revoked_at"] == body["revoked_at"]

    again = call(server, "DELETE", f"/v1/admin/keys/{created['id']}", bearer(MASTER_KEY))
    assert_error_envelope(again, 404)
    unknown = call(server, "DELETE", "/v1/admin/keys/key_nope", bearer(MASTER_KEY))
    assert_error_envelope(unknown, 404)


def test_an_admin_user_may_use_the_admin_api_with_a_key_or_a_password(
    server: RunningServer,
) -> None:
    admin_email = new_email("admin")
    assert admin_add_user(server, admin_email, PASSWORD, is_admin=True)["is_admin"] is True
    admin_key = admin_create_key(server, admin_email)
    for credentials in (bearer(admin_key), basic_auth(admin_email, PASSWORD)):
        email = new_email()
        added = call(
            server, "POST", "/v1/admin/users", credentials, {"email": email, "password": PASSWORD}
        )
        assert added.status_code == 201, added.text
        key = call(server, "POST", "/v1/admin/keys", credentials, {"email": email})
        assert key.status_code == 201, key.text
        assert works(server, bearer(key.json()["key"]))
        assert call(server, "GET", "/v1/admin/users", credentials).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_a_non_admin_gets_the_404_of_an_unknown_url(
    server: RunningServer, method: str, path: str, body: object
) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    key = admin_create_key(server, email)
    for credentials in (bearer(key), basic_auth(email, PASSWORD)):
        error = assert_error_envelope(call(server, method, path, credentials, body), 404)
        assert error == {
            "message": f"Unknown request URL: {method} {path}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    # Nothing was done on their behalf.
    users = call(server, "GET", "/v1/admin/users", bearer(MASTER_KEY)).json()["data"]
    assert "x@example.com" not in [user["email"] for user in users]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_the_admin_api_wants_credentials(
    server: RunningServer, method: str, path: str, body: object
) -> None:
    assert_error_envelope(call(server, method, path, {}, body), 401, code="missing_api_key")
    wrong = call(server, method, path, bearer("sk-wrong"), body)
    assert_error_envelope(wrong, 401, code="invalid_api_key")


def test_credentials_are_checked_before_the_body_is_parsed(server: RunningServer) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    key = admin_create_key(server, email)
    for credentials, status in (({}, 401), (bearer(key), 404), (bearer(MASTER_KEY), 400)):
        response = httpx.post(
            server.base_url + "/v1/admin/users",
            content=b"{not json",
            headers={"Content-Type": "application/json", **credentials},
            timeout=30,
        )
        assert_error_envelope(response, status)


def test_a_disabled_user_is_refused_at_once(server: RunningServer) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    key = admin_create_key(server, email)
    assert works(server, bearer(key)) and works(server, basic_auth(email, PASSWORD))

    response = call(server, "POST", f"/v1/admin/users/{email.upper()}/disable", bearer(MASTER_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["disabled"] is True and response.json()["email"] == email
    assert_error_envelope(call(server, "GET", "/v1/models", bearer(key)), 401)
    assert_error_envelope(
        call(server, "GET", "/v1/models", basic_auth(email, PASSWORD)),
        401,
        code="invalid_credentials",
    )
    listed = call(server, "GET", "/v1/admin/users", bearer(MASTER_KEY)).json()["data"]
    assert [user["disabled"] for user in listed if user["email"] == email] == [True]

    unknown = call(server, "POST", "/v1/admin/users/nobody@example.com/disable", bearer(MASTER_KEY))
    assert_error_envelope(unknown, 404)


def test_a_duplicate_email_is_a_400(server: RunningServer) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    for duplicate in (email, email.upper()):
        response = call(
            server,
            "POST",
            "/v1/admin/users",
            bearer(MASTER_KEY),
            {"email": duplicate, "password": "another password"},
        )
        error = assert_error_envelope(response, 400, param="email")
        assert "already exists" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a b@example.com", "password": PASSWORD}, "email"),
        ({"email": "short@example.com", "password": "1234567"}, "password"),
        ({"email": "nopass@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": "x@example.com", "password": PASSWORD, "is_admin": "maybe"}, "is_admin"),
        ({"email": "x@example.com", "password": PASSWORD, "role": "admin"}, "role"),
    ],
    ids=[
        "no-at",
        "space",
        "short-password",
        "no-password",
        "no-email",
        "bad-is-admin",
        "unknown-field",
    ],
)
def test_an_invalid_user_is_a_400_naming_the_field(
    server: RunningServer, body: dict, param: str
) -> None:
    response = call(server, "POST", "/v1/admin/users", bearer(MASTER_KEY), body)
    assert_error_envelope(response, 400, param=param)
    assert PASSWORD not in response.text


def test_invalid_key_requests(server: RunningServer) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    for name in ("", "   ", "n" * 129):
        response = call(
            server, "POST", "/v1/admin/keys", bearer(MASTER_KEY), {"email": email, "name": name}
        )
        assert_error_envelope(response, 400, param="name")
    missing = call(server, "POST", "/v1/admin/keys", bearer(MASTER_KEY), {"name": "x"})
    assert_error_envelope(missing, 400, param="email")
    nobody = call(server, "POST", "/v1/admin/keys", bearer(MASTER_KEY), {"email": new_email()})
    assert_error_envelope(nobody, 404)
    listing = call(server, "GET", "/v1/admin/keys", bearer(MASTER_KEY), email=new_email())
    assert_error_envelope(listing, 404)
    # None of that made a key.
    keys = call(server, "GET", "/v1/admin/keys", bearer(MASTER_KEY), email=email).json()
    assert keys == {"object": "list", "data": []}
