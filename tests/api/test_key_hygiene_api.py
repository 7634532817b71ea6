"""Key hygiene over the admin API, on a real server of each storage backend: keys with an
expiry (`expires_in`), the 401 `api_key_expired` an expired key gets (through the official
SDK), rotation with a grace (`POST /v1/admin/keys/{id}/rotate`), and the zero-retention flag
of keys and users (`PUT …/zero_retention`)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    bearer,
    new_email,
    wait_until,
)

PASSWORD = "a-long-enough-password"


def _admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30)


def _user(admin: httpx.Client, **fields: object) -> dict:
    email = new_email("hygiene")
    response = admin.post("/v1/admin/users", json={"email": email, "password": PASSWORD, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _key(admin: httpx.Client, email: str, **fields: object) -> dict:
    response = admin.post("/v1/admin/keys", json={"email": email, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _models_status(server: RunningServer, secret: str) -> httpx.Response:
    return httpx.get(f"{server.api_url}/models", headers=bearer(secret), timeout=30)


@pytest.mark.parametrize("expires_in", ["90d", 90 * 86400])
def test_a_key_shows_the_expiry_it_was_created_with(
    stored_server: RunningServer, expires_in: object
) -> None:
    with _admin(stored_server) as admin:
        email = _user(admin)["email"]
        key = _key(admin, email, expires_in=expires_in)
        assert key["expires_at"] == key["created_at"] + 90 * 86400
        listed = admin.get("/v1/admin/keys", params={"email": email}).json()["data"]
        assert [k["expires_at"] for k in listed] == [key["expires_at"]]
        assert _key(admin, email)["expires_at"] is None


@pytest.mark.parametrize("expires_in", ["90x", "d", 0, -5, "0s", True, "99999d"])
def test_a_bad_expiry_is_refused(server: RunningServer, expires_in: object) -> None:
    with _admin(server) as admin:
        email = _user(admin)["email"]
        response = admin.post("/v1/admin/keys", json={"email": email, "expires_in": expires_in})
        assert_error_envelope(response, 400, param="expires_in")


def test_an_expired_key_gets_a_401_api_key_expired(stored_server: RunningServer) -> None:
    with _admin(stored_server) as admin:
        email = _user(admin)["email"]
        secret = _key(admin, email, expires_in=1)["key"]
    wait_until(
        lambda: _models_status(stored_server, secret).status_code == 401,
        timeout=10,
        what="the key to expire",
    )
    error = assert_error_envelope(
        _models_status(stored_server, secret), 401, code="api_key_expired"
    )
    assert "expired" in error["message"] and secret not in error["message"]

    client = OpenAI(base_url=stored_server.api_url, api_key=secret, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.code == "api_key_expired"


def test_a_revoked_key_stays_an_incorrect_key(server: RunningServer) -> None:
    with _admin(server) as admin:
        email = _user(admin)["email"]
        key = _key(admin, email, expires_in="1h")
        assert admin.delete(f"/v1/admin/keys/{key['id']}").status_code == 200
    assert_error_envelope(_models_status(server, key["key"]), 401, code="invalid_api_key")


def test_rotation_keeps_both_keys_working_until_the_grace_ends(
    stored_server: RunningServer,
) -> None:
    with _admin(stored_server) as admin:
        email = _user(admin)["email"]
        old = _key(
            admin, email, name="mailer", rate_limits={"rpm": 50}, expires_in="30d",
            zero_retention=True,
        )  # fmt: skip
        budget = admin.post("/v1/admin/budgets", json={"key": old["id"], "amount_usd": 5})
        assert budget.status_code == 201, budget.text

        response = admin.post(f"/v1/admin/keys/{old['id']}/rotate", json={"grace": "2s"})
        assert response.status_code == 201, response.text
        new = response.json()
        assert new["id"] != old["id"] and new["key"] != old["key"]
        assert (new["name"], new["email"], new["rate_limits"]) == ("mailer", email, {"rpm": 50})
        assert new["zero_retention"] is True and new["successor_id"] is None
        assert new["expires_at"] - new["created_at"] == 30 * 86400
        rotated = new["rotated_key"]
        assert rotated["id"] == old["id"] and rotated["successor_id"] == new["id"]
        assert "key" not in rotated  # its secret is never shown again
        assert rotated["revoked_at"] - time.time() <= 2

        budgets = admin.get("/v1/admin/budgets").json()["data"]
        copied = [b for b in budgets if b["subject_id"] == new["id"]]
        assert [(b["scope"], b["amount_usd"], b["period"]) for b in copied] == [
            ("key", 5.0, "month")
        ]

    assert _models_status(stored_server, new["key"]).status_code == 200
    assert _models_status(stored_server, old["key"]).status_code == 200  # in its grace
    wait_until(
        lambda: _models_status(stored_server, old["key"]).status_code == 401,
        timeout=10,
        what="the rotated key's grace to end",
    )
    assert_error_envelope(_models_status(stored_server, old["key"]), 401, code="invalid_api_key")
    assert _models_status(stored_server, new["key"]).status_code == 200


def test_rotation_without_a_body_uses_a_day_of_grace(server: RunningServer) -> None:
    with _admin(server) as admin:
        old = _key(admin, _user(admin)["email"])
        new = admin.post(f"/v1/admin/keys/{old['id']}/rotate").json()
        assert new["rotated_key"]["revoked_at"] - new["created_at"] in range(86399, 86401)


def test_rotation_with_no_grace_stops_the_old_key_at_once(server: RunningServer) -> None:
    with _admin(server) as admin:
        old = _key(admin, _user(admin)["email"])
        response = admin.post(f"/v1/admin/keys/{old['id']}/rotate", json={"grace": 0})
        assert response.status_code == 201, response.text
    assert _models_status(server, old["key"]).status_code == 401
    assert _models_status(server, response.json()["key"]).status_code == 200


def test_a_rotated_revoked_unknown_key_or_a_bad_grace_is_refused(server: RunningServer) -> None:
    with _admin(server) as admin:
        email = _user(admin)["email"]
        rotated = _key(admin, email)
        assert admin.post(f"/v1/admin/keys/{rotated['id']}/rotate").status_code == 201
        again = admin.post(f"/v1/admin/keys/{rotated['id']}/rotate")
        assert_error_envelope(again, 400, param="key_id", code="key_already_rotated")

        revoked = _key(admin, email)
        admin.delete(f"/v1/admin/keys/{revoked['id']}")
        refused = admin.post(f"/v1/admin/keys/{revoked['id']}/rotate")
        assert_error_envelope(refused, 400, param="key_id", code="key_revoked")

        assert_error_envelope(admin.post("/v1/admin/keys/key_unknown/rotate"), 404)
        fresh = _key(admin, email)
        for grace in ("-1s", "soon", -3):
            response = admin.post(f"/v1/admin/keys/{fresh['id']}/rotate", json={"grace": grace})
            assert_error_envelope(response, 400, param="grace")
        unknown = admin.post(f"/v1/admin/keys/{fresh['id']}/rotate", json={"wait": "1h"})
        assert_error_envelope(unknown, 400)
        assert _models_status(server, fresh["key"]).status_code == 200  # never rotated


def test_zero_retention_is_set_shown_and_changed_on_keys_and_users(server: RunningServer) -> None:
    with _admin(server) as admin:
        user = _user(admin, zero_retention=True)
        assert user["zero_retention"] is True
        assert _user(admin)["zero_retention"] is False
        email = user["email"]
        key = _key(admin, email, zero_retention=True)
        assert key["zero_retention"] is True
        assert _key(admin, email)["zero_retention"] is False

        off = admin.put(f"/v1/admin/keys/{key['id']}/zero_retention", json={"enabled": False})
        assert off.status_code == 200 and off.json()["zero_retention"] is False
        listed = admin.get("/v1/admin/keys", params={"email": email}).json()["data"]
        assert [k["zero_retention"] for k in listed] == [False, False]

        user_off = admin.put(f"/v1/admin/users/{email}/zero_retention", json={"enabled": False})
        assert user_off.status_code == 200 and user_off.json()["zero_retention"] is False
        users = admin.get("/v1/admin/users").json()["data"]
        assert [u["zero_retention"] for u in users if u["email"] == email] == [False]

        bad = admin.put(f"/v1/admin/keys/{key['id']}/zero_retention", json={"enabled": "maybe"})
        assert_error_envelope(bad, 400)
        missing = admin.put("/v1/admin/keys/key_unknown/zero_retention", json={"enabled": True})
        assert_error_envelope(missing, 404)


def test_the_new_key_routes_are_not_found_for_a_non_admin(server: RunningServer) -> None:
    with _admin(server) as admin:
        key = _key(admin, _user(admin)["email"])
    caller = bearer(key["key"])
    for method, path, body in (
        ("POST", f"/v1/admin/keys/{key['id']}/rotate", {}),
        ("PUT", f"/v1/admin/keys/{key['id']}/zero_retention", {"enabled": True}),
    ):
        response = httpx.request(
            method, f"{server.base_url}{path}", json=body, headers=caller, timeout=30
        )
        assert_error_envelope(response, 404)
    assert _models_status(server, key["key"]).status_code == 200  # not rotated
