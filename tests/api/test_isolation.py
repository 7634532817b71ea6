"""Ownership: two users, every stored-completion route, on SQLite and PostgreSQL.

Neither user can read, list, update or delete the other's completions — the answer is the 404
of an id that never existed, never a 403 — and the owner's completions are intact afterwards.
The master key is an owner like any other on these routes. A user's Basic credentials and API
key are the same owner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

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

URL = "/v1/chat/completions"
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: always max_tokens of text


@dataclass(frozen=True)
class Account:
    name: str
    email: str
    password: str
    key: str

    @property
    def bearer(self) -> dict[str, str]:
        return bearer(self.key)

    @property
    def basic(self) -> dict[str, str]:
        return basic_auth(self.email, self.password)


def new_account(server: RunningServer, name: str) -> Account:
    email = new_email(name)
    password = f"{name}-password-{uuid.uuid4().hex[:8]}"
    admin_add_user(server, email, password)
    return Account(name, email, password, admin_create_key(server, email))


@dataclass(frozen=True)
class World:
    server: RunningServer
    alice: Account
    bob: Account
    tag: dict[str, str]  # metadata on every completion made here
    alice_ids: list[str]  # one made with her key, one with her password
    bob_id: str
    master_id: str


def request(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str],
    body: object = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, json=body, headers=headers, params=params, timeout=120
    )


def create(server: RunningServer, headers: dict[str, str], metadata: dict[str, str]) -> str:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "logit_bias": NO_END,
        "store": True,
        "metadata": metadata,
    }
    response = request(server, "POST", URL, headers, body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def world(stored_server: RunningServer) -> World:
    alice = new_account(stored_server, "alice")
    bob = new_account(stored_server, "bob")
    tag = {"isolation": uuid.uuid4().hex}
    alice_ids = [
        create(stored_server, alice.bearer, {**tag, "who": "alice"}),
        create(stored_server, alice.basic, {**tag, "who": "alice"}),
    ]
    bob_id = create(stored_server, bob.bearer, {**tag, "who": "bob"})
    master_id = create(stored_server, bearer(MASTER_KEY), {**tag, "who": "master"})
    return World(stored_server, alice, bob, tag, alice_ids, bob_id, master_id)


def listed(server: RunningServer, headers: dict[str, str], **params: str) -> list[str]:
    """Every id on every page of the caller's list."""
    ids: list[str] = []
    query = {"limit": "100", **params}
    while True:
        response = request(server, "GET", URL, headers, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            return ids
        query["after"] = page["last_id"]


# Every route that names one stored completion: (method, path template, body).
ROUTES = [
    ("GET", URL + "/{id}", None),
    ("POST", URL + "/{id}", {"metadata": {"stolen": "yes"}}),
    ("GET", URL + "/{id}/messages", None),
    ("DELETE", URL + "/{id}", None),
]
ROUTE_IDS = ["retrieve", "update", "messages", "delete"]


def credentials(world: World, who: str) -> dict[str, str]:
    return {
        "bob-key": world.bob.bearer,
        "bob-password": world.bob.basic,
        "master": bearer(MASTER_KEY),
    }[who]


@pytest.mark.parametrize("intruder", ["bob-key", "bob-password", "master"])
@pytest.mark.parametrize(("method", "template", "body"), ROUTES, ids=ROUTE_IDS)
def test_someone_else_gets_the_404_of_a_missing_id(
    world: World, intruder: str, method: str, template: str, body: object
) -> None:
    headers = credentials(world, intruder)
    for target in world.alice_ids:
        response = request(world.server, method, template.format(id=target), headers, body)
        error = assert_error_envelope(response, 404)
        # Word for word what an id that never existed gets: nothing tells them it exists.
        missing = "chatcmpl-" + uuid.uuid4().hex
        never = request(world.server, method, template.format(id=missing), headers, body)
        assert error == {**assert_error_envelope(never, 404), "message": error["message"]}
        assert error["message"] == never.json()["error"]["message"].replace(missing, target)
    assert_alice_intact(world)


def assert_alice_intact(world: World) -> None:
    for target in world.alice_ids:
        got = request(world.server, "GET", f"{URL}/{target}", world.alice.bearer)
        assert got.status_code == 200, got.text
        assert got.json()["metadata"] == {**world.tag, "who": "alice"}
        messages = request(world.server, "GET", f"{URL}/{target}/messages", world.alice.basic)
        assert messages.status_code == 200, messages.text
        assert [m["role"] for m in messages.json()["data"]] == ["system", "user"]
    assert set(world.alice_ids) <= set(listed(world.server, world.alice.bearer, **tag(world)))


def tag(world: World) -> dict[str, str]:
    return {f"metadata[{key}]": value for key, value in world.tag.items()}


def test_lists_hold_only_the_callers_own_completions(world: World) -> None:
    expected = {
        "alice": set(world.alice_ids),
        "bob": {world.bob_id},
        "master": {world.master_id},
    }
    callers = {
        "alice": [world.alice.bearer, world.alice.basic],
        "bob": [world.bob.bearer, world.bob.basic],
        "master": [bearer(MASTER_KEY)],
    }
    everyone = set().union(*expected.values())
    for who, headers_list in callers.items():
        for headers in headers_list:
            # Filtered on this module's tag: exactly their own.
            assert set(listed(world.server, headers, **tag(world))) == expected[who], who
            # Unfiltered, in both orders: none of the others'.
            for order in ("asc", "desc"):
                ids = set(listed(world.server, headers, order=order))
                assert ids & everyone == expected[who], (who, order)
            # Filtered on someone else's metadata: nothing.
            for other in set(expected) - {who}:
                assert listed(world.server, headers, **{"metadata[who]": other}) == []


@pytest.mark.parametrize("intruder", ["bob-key", "bob-password", "master"])
def test_someone_elses_id_as_a_cursor_is_unknown(world: World, intruder: str) -> None:
    headers = credentials(world, intruder)
    for target in world.alice_ids:
        response = request(world.server, "GET", URL, headers, params={"after": target})
        assert_error_envelope(response, 400, param="after")
        messages_of_own = world.bob_id if intruder != "master" else world.master_id
        after_message = f"{target}-0"
        response = request(
            world.server,
            "GET",
            f"{URL}/{messages_of_own}/messages",
            headers,
            params={"after": after_message},
        )
        assert_error_envelope(response, 400, param="after")


def test_a_users_key_and_password_are_the_same_owner(world: World) -> None:
    by_key, by_password = world.alice_ids
    for headers in (world.alice.bearer, world.alice.basic):
        for target in (by_key, by_password):
            response = request(world.server, "GET", f"{URL}/{target}", headers)
            assert response.status_code == 200, response.text
    assert listed(world.server, world.alice.bearer, **tag(world)) == listed(
        world.server, world.alice.basic, **tag(world)
    )


def test_the_owner_can_still_change_and_delete_after_the_attempts(world: World) -> None:
    """Runs after the intruders' tests: the owner's own update and delete work, and only once."""
    own = create(world.server, world.alice.bearer, {"who": "alice-own"})
    updated = request(
        world.server, "POST", f"{URL}/{own}", world.alice.basic, {"metadata": {"v": "2"}}
    )
    assert updated.status_code == 200 and updated.json()["metadata"] == {"v": "2"}
    # Bob's delete does nothing; Alice's does.
    assert_error_envelope(request(world.server, "DELETE", f"{URL}/{own}", world.bob.bearer), 404)
    deleted = request(world.server, "DELETE", f"{URL}/{own}", world.alice.bearer)
    assert deleted.json() == {"object": "chat.completion.deleted", "id": own, "deleted": True}
    assert_error_envelope(request(world.server, "GET", f"{URL}/{own}", world.alice.bearer), 404)
    assert_alice_intact(world)


def test_a_revoked_key_loses_access_to_its_owners_completions_at_once(world: World) -> None:
    key = admin_create_key(world.server, world.alice.email, "short-lived")
    target = world.alice_ids[0]
    assert request(world.server, "GET", f"{URL}/{target}", bearer(key)).status_code == 200
    key_id = next(
        item["id"]
        for item in request(
            world.server,
            "GET",
            "/v1/admin/keys",
            bearer(MASTER_KEY),
            params={"email": world.alice.email},
        ).json()["data"]
        if item["name"] == "short-lived"
    )
    revoked = request(world.server, "DELETE", f"/v1/admin/keys/{key_id}", bearer(MASTER_KEY))
    assert revoked.status_code == 200, revoked.text
    for method, template, body in ROUTES:
        response = request(world.server, method, template.format(id=target), bearer(key), body)
        assert_error_envelope(response, 401, code="invalid_api_key")
    assert_error_envelope(request(world.server, "GET", URL, bearer(key)), 401)
    assert_alice_intact(world)
