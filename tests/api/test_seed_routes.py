"""The e-mail manager's REST routes (seed 000) under `/api/ai/chat/completions`.

The seed's six curl examples, as written (`-u user@example.com:password`, its bodies and query
strings), become HTTP calls with Basic auth; the answers are the seed's documented dictionaries.
Then the failures (`{"success": false, "error": …}` with their statuses), Bearer keys, paging and
filters, and two users who can neither read, list, update nor delete each other's completions on
any route, `/api/ai` or `/v1`. Everything runs on both storage backends (`[sqlite]`,
`[postgres]`), with users added by the real CLI (`aiservice users add`) to the server's database.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from support import (
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    cli_add_user,
    cli_create_key,
    sse_events,
)

URL = "/api/ai/chat/completions"
SERVED_MODEL = "smollm2-135m-instruct"  # what "gpt-4o-mini" resolves to
SEED_USER = ("user@example.com", "password")  # the seed's `-u user@example.com:password`

# The seed's create example, byte for byte what its curl sends with -d.
SEED_CREATE_BODY = """{
    "messages": [
      {"role": "system", "content": "Tu es un assistant email."},
      {"role": "user", "content": "Écris une réponse professionnelle."}
    ],
    "model": "gpt-4o-mini",
    "temperature": 0.7,
    "max_tokens": 200,
    "store": true,
    "metadata": {
      "user_id": "123",
      "category": "email_response"
    }
  }"""
SEED_UPDATE_BODY = """{
    "metadata": {
      "status": "approved",
      "rating": "5"
    }
  }"""
JSON = {"Content-Type": "application/json"}
COMPLETION_KEYS = {"success", "id", "model", "choices", "usage", "created"}


def client_for(server: RunningServer, auth: httpx.Auth | tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, auth=auth, timeout=120)


def cheap_create(http: httpx.Client, metadata: dict[str, str]) -> dict[str, Any]:
    """A stored completion made through /api/ai, one token long."""
    response = http.post(
        URL,
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 1,
            "store": True,
            "metadata": metadata,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_seed_error(response: httpx.Response, status: int) -> str:
    """The seed's failure dict, exactly: {"success": false, "error": "<message>"}."""
    text = response.text
    assert response.status_code == status, text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert "Traceback" not in text, text
    body = response.json()
    assert set(body) == {"success", "error"}, body
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"].strip(), body
    return body["error"]


def assert_basic_challenge(response: httpx.Response) -> None:
    assert response.headers["www-authenticate"] == 'Basic realm="aiservice"'


@pytest.fixture(scope="module")
def seed_http(stored_server: RunningServer) -> Iterator[httpx.Client]:
    """The seed's curl user, added with the CLI; the client logs in with Basic auth."""
    cli_add_user(stored_server, *SEED_USER)
    with client_for(stored_server, SEED_USER) as http:
        yield http


@pytest.fixture(scope="module")
def created(seed_http: httpx.Client) -> dict[str, Any]:
    """The answer to the seed's create example (curl #1)."""
    response = seed_http.post(URL, content=SEED_CREATE_BODY.encode(), headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()


# --- The six curl examples -------------------------------------------------------------------


def test_curl_create_returns_the_seeds_completion_dict(created: dict[str, Any]) -> None:
    assert set(created) == COMPLETION_KEYS, created
    assert created["success"] is True
    assert created["id"].startswith("chatcmpl-")
    assert created["model"] == SERVED_MODEL
    assert abs(created["created"] - time.time()) < 600
    [choice] = created["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = created["usage"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage[key], int), usage
    assert usage["prompt_tokens"] > 0 and 0 <= usage["completion_tokens"] <= 200
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_curl_get_returns_the_completion_and_its_metadata(
    seed_http: httpx.Client, created: dict[str, Any]
) -> None:
    response = seed_http.get(f"{URL}/{created['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == COMPLETION_KEYS | {"metadata"}
    assert body == {**created, "metadata": {"user_id": "123", "category": "email_response"}}


def test_curl_list_limit_10_desc(seed_http: httpx.Client, created: dict[str, Any]) -> None:
    response = seed_http.get(f"{URL}?limit=10&order=desc")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "completions", "has_more", "last_id"}
    assert body["success"] is True
    completions = body["completions"]
    assert 1 <= len(completions) <= 10
    for item in completions:
        assert set(item) == {"id", "model", "created", "usage", "metadata"}, item
        assert item["model"] == SERVED_MODEL
        assert isinstance(item["usage"]["total_tokens"], int)
    stamps = [item["created"] for item in completions]
    assert stamps == sorted(stamps, reverse=True)
    assert body["last_id"] == completions[-1]["id"]
    assert isinstance(body["has_more"], bool)
    [mine] = [item for item in completions if item["id"] == created["id"]]
    assert mine["usage"] == created["usage"]
    assert mine["metadata"] == {"user_id": "123", "category": "email_response"}


def test_curl_update_replaces_the_metadata(seed_http: httpx.Client) -> None:
    target = cheap_create(seed_http, {"user_id": "123"})
    response = seed_http.post(
        f"{URL}/{target['id']}", content=SEED_UPDATE_BODY.encode(), headers=JSON
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {**target, "metadata": {"status": "approved", "rating": "5"}}
    assert seed_http.get(f"{URL}/{target['id']}").json()["metadata"] == {
        "status": "approved",
        "rating": "5",
    }


def test_curl_delete_removes_the_completion(seed_http: httpx.Client) -> None:
    target = cheap_create(seed_http, {"user_id": "123"})
    response = seed_http.delete(f"{URL}/{target['id']}")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result == {"success": True, "id": target["id"], "deleted": True}
    assert result["success"] and result["deleted"]  # the seed's own check
    assert_seed_error(seed_http.get(f"{URL}/{target['id']}"), 404)
    assert_seed_error(seed_http.delete(f"{URL}/{target['id']}"), 404)


def test_curl_messages_limit_20(seed_http: httpx.Client, created: dict[str, Any]) -> None:
    response = seed_http.get(f"{URL}/{created['id']}/messages?limit=20")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "success": True,
        "messages": [
            {
                "id": f"{created['id']}-0",
                "role": "system",
                "content": "Tu es un assistant email.",
            },
            {
                "id": f"{created['id']}-1",
                "role": "user",
                "content": "Écris une réponse professionnelle.",
            },
        ],
        "has_more": False,
        "last_id": f"{created['id']}-1",
    }
    desc = seed_http.get(f"{URL}/{created['id']}/messages", params={"order": "desc", "limit": 1})
    assert [m["role"] for m in desc.json()["messages"]] == ["user"]
    assert desc.json()["has_more"] is True


# --- Authentication --------------------------------------------------------------------------


def test_wrong_password_is_401_with_the_seeds_error(
    stored_server: RunningServer, seed_http: httpx.Client
) -> None:
    with client_for(stored_server, (SEED_USER[0], "wrong-password")) as http:
        response = http.get(URL)
    assert "password" in assert_seed_error(response, 401)
    assert_basic_challenge(response)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk-not-a-key", "Basic !!!", "Token abc"],
    ids=["none", "unknown-key", "malformed-basic", "other-scheme"],
)
def test_missing_or_bad_credentials_are_401_on_every_route(
    stored_server: RunningServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with client_for(stored_server, None) as http:
        for method, path in [
            ("POST", URL),
            ("GET", URL),
            ("GET", f"{URL}/chatcmpl-x"),
            ("POST", f"{URL}/chatcmpl-x"),
            ("DELETE", f"{URL}/chatcmpl-x"),
            ("GET", f"{URL}/chatcmpl-x/messages"),
        ]:
            body = {"messages": []} if method == "POST" else None  # 401 comes before the 400
            response = http.request(method, path, json=body, headers=headers)
            assert_seed_error(response, 401)
            assert_basic_challenge(response)


def test_unknown_email_is_401(stored_server: RunningServer) -> None:
    with client_for(stored_server, ("nobody@example.com", "password")) as http:
        assert_seed_error(http.get(URL), 401)


def test_a_bearer_key_of_the_same_user_sees_the_same_completions(
    stored_server: RunningServer, seed_http: httpx.Client, created: dict[str, Any]
) -> None:
    key = cli_create_key(stored_server, SEED_USER[0])
    with client_for(stored_server, None) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        response = http.get(f"{URL}/{created['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == created["id"]
        listed = http.get(URL, params={"metadata[category]": "email_response", "limit": 100})
        assert created["id"] in [c["id"] for c in listed.json()["completions"]]


def test_the_openai_routes_keep_their_own_401(stored_server: RunningServer) -> None:
    response = httpx.get(f"{stored_server.base_url}/v1/chat/completions", timeout=30)
    assert_error_envelope(response, 401, code="missing_api_key")
    assert "www-authenticate" not in response.headers


# --- Failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "MESSAGES"])
def test_unknown_id_is_404(seed_http: httpx.Client, method: str) -> None:
    path = f"{URL}/chatcmpl-doesnotexist"
    if method == "MESSAGES":
        response = seed_http.get(f"{path}/messages")
    elif method == "POST":
        response = seed_http.post(path, json={"metadata": {"a": "b"}})
    else:
        response = seed_http.request(method, path)
    assert "chatcmpl-doesnotexist" in assert_seed_error(response, 404)


HI = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"model": "gpt-4o-mini", "messages": []}, 400, "messages"),
        ({"model": "gpt-4o-mini"}, 400, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "boss", "content": "x"}]}, 400, "role"),
        ({"model": "gpt-4o-mini", "messages": HI, "tempo": 1}, 400, "tempo"),
        ({"model": "gpt-4o-mini", "messages": HI, "temperature": 3}, 400, "temperature"),
        ({"model": "gpt-nope", "messages": HI}, 404, "gpt-nope"),
    ],
    ids=["empty-messages", "no-messages", "bad-role", "unknown-param", "bad-temperature", "model"],
)
def test_bad_create_requests_fail_in_the_seeds_shape(
    seed_http: httpx.Client, body: dict[str, Any], status: int, says: str
) -> None:
    assert says in assert_seed_error(seed_http.post(URL, json=body), status)


def test_malformed_json_is_400(seed_http: httpx.Client) -> None:
    response = seed_http.post(URL, content=b'{"messages": [', headers=JSON)
    assert "JSON" in assert_seed_error(response, 400)


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "101"}, {"order": "sideways"}, {"after": "chatcmpl-unknown"}],
    ids=["limit-0", "limit-101", "order", "unknown-after"],
)
def test_bad_list_parameters_are_400(seed_http: httpx.Client, query: dict[str, str]) -> None:
    assert_seed_error(seed_http.get(URL, params=query), 400)


def test_bad_metadata_update_is_400(seed_http: httpx.Client, created: dict[str, Any]) -> None:
    path = f"{URL}/{created['id']}"
    too_many = {f"k{i}": "v" for i in range(17)}
    for body in [{"metadata": {"k": 1}}, {"metadata": {}, "extra": 1}, {"metadata": too_many}]:
        assert_seed_error(seed_http.post(path, json=body), 400)
    assert seed_http.get(path).json()["metadata"] == {
        "user_id": "123",
        "category": "email_response",
    }


def test_unknown_url_and_method_under_api_ai_fail_in_the_seeds_shape(
    seed_http: httpx.Client,
) -> None:
    assert_seed_error(seed_http.get("/api/ai/nope"), 404)
    assert_seed_error(seed_http.put(URL, json={}), 405)


def _oversized_body(limit: int = 8 * 1024 * 1024) -> bytes:
    padding = b"a" * (limit + 1)
    return (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + padding + b'"}]}'
    )


def test_oversized_bodies_are_413_in_the_seeds_shape(http: httpx.Client) -> None:
    content = _oversized_body()
    with_length = http.post(URL, content=content, headers=JSON)
    assert_seed_error(with_length, 413)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    chunked = http.post(URL, content=chunks(), headers=JSON)
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert_seed_error(chunked, 413)
    # The OpenAI route keeps its envelope for the same body.
    assert_error_envelope(http.post("/v1/chat/completions", content=content, headers=JSON), 413)


# --- Streaming, paging, filters --------------------------------------------------------------


def test_stream_true_is_the_same_sse_stream_as_the_openai_route(seed_http: httpx.Client) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with seed_http.stream("POST", URL, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert_matches_schema(chunk, "CreateChatCompletionStreamResponse")
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[-1]["usage"]["completion_tokens"] <= 5


def test_list_pages_with_after_and_filters_by_metadata_and_model(
    seed_http: httpx.Client,
) -> None:
    tag = uuid.uuid4().hex
    ids = [cheap_create(seed_http, {"test": tag, "n": str(n)})["id"] for n in range(3)]

    first = seed_http.get(URL, params={"metadata[test]": tag, "limit": 2}).json()
    assert [c["id"] for c in first["completions"]] == ids[:2]
    assert first["has_more"] is True and first["last_id"] == ids[1]
    rest = seed_http.get(URL, params={"metadata[test]": tag, "after": first["last_id"]}).json()
    assert [c["id"] for c in rest["completions"]] == ids[2:]
    assert rest["has_more"] is False and rest["last_id"] == ids[2]

    def listed(**params: str) -> list[str]:
        response = seed_http.get(URL, params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["completions"]]

    # Several pairs: all must match; the seed's Python names work as query parameters too.
    assert listed(**{"metadata[test]": tag, "metadata[n]": "1"}) == [ids[1]]
    assert listed(**{"metadata_filter[test]": tag, "metadata_filter[n]": "2"}) == [ids[2]]
    assert listed(**{"metadata[test]": tag, "model": SERVED_MODEL}) == ids
    assert listed(**{"metadata[test]": tag, "model_filter": SERVED_MODEL}) == ids
    assert listed(**{"metadata[test]": tag, "model": "gpt-4o"}) == []
    assert listed(**{"metadata[test]": tag, "order": "desc"}) == ids[::-1]
    empty = seed_http.get(URL, params={"metadata[test]": "no-such-tag"}).json()
    assert empty == {"success": True, "completions": [], "has_more": False, "last_id": None}


# --- Two users, every route ------------------------------------------------------------------


@dataclass
class User:
    name: str
    email: str
    http: httpx.Client
    completion: dict[str, Any]


@pytest.fixture(scope="module")
def two_users(stored_server: RunningServer) -> Iterator[tuple[User, User, str]]:
    """Alice and Bob, added with the CLI, each with one stored completion tagged `tag`."""
    tag = uuid.uuid4().hex
    users = []
    clients = []
    for name in ("alice", "bob"):
        email, password = f"{name}-{secrets.token_hex(4)}@example.com", secrets.token_hex(8)
        cli_add_user(stored_server, email, password)
        http = client_for(stored_server, (email, password))
        clients.append(http)
        users.append(User(name, email, http, cheap_create(http, {"test": tag, "owner": name})))
    try:
        yield users[0], users[1], tag
    finally:
        for http in clients:
            http.close()


def test_neither_user_can_touch_the_others_completions_on_any_route(
    two_users: tuple[User, User, str],
) -> None:
    alice, bob, tag = two_users
    for owner, other in [(alice, bob), (bob, alice)]:
        assert_isolated(owner, other, tag)
    # After all that, each one still reads, lists and deletes their own.
    for user in (alice, bob):
        own = user.completion["id"]
        listed = user.http.get(URL, params={"metadata[test]": tag}).json()["completions"]
        assert [c["id"] for c in listed] == [own]
        assert user.http.delete(f"{URL}/{own}").json()["deleted"] is True
        assert user.http.get(URL, params={"metadata[test]": tag}).json()["completions"] == []


def assert_isolated(owner: User, other: User, tag: str) -> None:
    theirs = owner.completion["id"]
    owner_metadata = owner.http.get(f"{URL}/{theirs}").json()["metadata"]
    assert owner_metadata == {"test": tag, "owner": owner.name}

    # /api/ai: read, update, delete, messages: 404, as for an id that never existed.
    for response in [
        other.http.get(f"{URL}/{theirs}"),
        other.http.post(f"{URL}/{theirs}", json={"metadata": {"stolen": "yes"}}),
        other.http.delete(f"{URL}/{theirs}"),
        other.http.get(f"{URL}/{theirs}/messages"),
    ]:
        assert_seed_error(response, 404)
    # ... list: only their own, and the other's id is no cursor for them.
    listed = other.http.get(URL, params={"metadata[test]": tag}).json()["completions"]
    assert [c["id"] for c in listed] == [other.completion["id"]]
    assert_seed_error(other.http.get(URL, params={"after": theirs}), 400)

    # /v1 with the same credentials: the same refusals in OpenAI's envelope.
    v1 = "/v1/chat/completions"
    for response in [
        other.http.get(f"{v1}/{theirs}"),
        other.http.post(f"{v1}/{theirs}", json={"metadata": {"stolen": "yes"}}),
        other.http.delete(f"{v1}/{theirs}"),
        other.http.get(f"{v1}/{theirs}/messages"),
    ]:
        assert_error_envelope(response, 404)
    listed_v1 = other.http.get(v1, params={"metadata[test]": tag}).json()["data"]
    assert [c["id"] for c in listed_v1] == [other.completion["id"]]
    assert_error_envelope(other.http.get(v1, params={"after": theirs}), 400, param="after")

    # Nothing changed for the owner, on either surface.
    mine = owner.http.get(f"{URL}/{theirs}")
    assert mine.status_code == 200 and mine.json()["metadata"] == owner_metadata
    assert owner.http.get(f"{v1}/{theirs}").json()["metadata"] == owner_metadata
    assert len(owner.http.get(f"{URL}/{theirs}/messages").json()["messages"]) == 1
