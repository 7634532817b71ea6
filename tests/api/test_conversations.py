"""The Conversations API: conversations, their items, and responses created in a conversation.

A conversation (`POST /v1/conversations`) is a long-lived, owned list of items in the shapes of
the Responses API's input items. Its routes (retrieve, update, delete; add, list, retrieve and
delete items) run once per storage backend (`[sqlite]`, `[postgres]`) on the `stored_*` servers;
request validation runs on the session server. `POST /v1/responses` with `conversation` reads
the conversation's items before its own input, and once the response ends `completed` or
`incomplete` appends its input items then its output items, with the ids the response gave
them, whether stored, streamed or run in the background; a cancelled response appends nothing.

Every body is validated against OpenAI's schemas: ConversationResource, ConversationItemList,
ConversationItem, DeletedConversationResource and Response. Another user gets the 404 of a
conversation that never existed, on every route and when naming it in `/v1/responses`.

The model is tiny and the machine small: generations are greedy and capped at 16 to 32 tokens.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy.engine import make_url

from support import (
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    admin_create_key,
    assert_error_envelope,
    assert_matches_schema,
    bearer,
    new_email,
    responses_sse_events,
    run_in_thread,
    server_cli,
    start_server,
    stop_server,
    wait_until,
)

URL = "/v1/conversations"
RESPONSES_URL = "/v1/responses"
COUNT_URL = "/v1/responses/input_tokens"
MODEL = "gpt-4o-mini"
HI = "Hi"
TERMINAL = {"completed", "incomplete", "failed", "cancelled"}
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}

# -- helpers: conversations ----------------------------------------------------------------


def conversation_url(conversation_id: str) -> str:
    return f"{URL}/{conversation_id}"


def items_url(conversation_id: str, item_id: str | None = None) -> str:
    base = f"{URL}/{conversation_id}/items"
    return base if item_id is None else f"{base}/{item_id}"


def assert_conversation_resource(body: dict[str, Any]) -> None:
    """OpenAI's ConversationResource, and exactly its four fields."""
    assert_matches_schema(body, "ConversationResource")
    assert set(body) == {"id", "object", "created_at", "metadata"}, body
    assert body["id"].startswith("conv_"), body
    assert body["object"] == "conversation"
    assert isinstance(body["created_at"], int)
    assert isinstance(body["metadata"], dict)


def create_conversation(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /v1/conversations with `body`; assert 200 and the schema; return the resource."""
    response = http.post(URL, json=body)
    assert response.status_code == 200, response.text
    conversation = response.json()
    assert_conversation_resource(conversation)
    return conversation


def get_conversation(http: httpx.Client, conversation_id: str) -> dict[str, Any]:
    response = http.get(conversation_url(conversation_id))
    assert response.status_code == 200, response.text
    assert_conversation_resource(response.json())
    return response.json()


def assert_item_list(body: dict[str, Any]) -> None:
    """A ConversationItemList whose first_id and last_id are those of its data."""
    assert_matches_schema(body, "ConversationItemList")
    assert body["object"] == "list"
    ids = [item["id"] for item in body["data"]]
    if ids:
        assert (body["first_id"], body["last_id"]) == (ids[0], ids[-1]), body


def add_items(http: httpx.Client, conversation_id: str, items: list[dict]) -> dict[str, Any]:
    """POST …/items; assert 200 and the schema; return the list of the added items."""
    response = http.post(items_url(conversation_id), json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_item_list(body)
    assert body["has_more"] is False
    return body


def list_page(http: httpx.Client, conversation_id: str, **params: Any) -> dict[str, Any]:
    """One page of GET …/items; assert 200 and the schema."""
    response = http.get(items_url(conversation_id), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_item_list(body)
    return body


def walk_items(http: httpx.Client, conversation_id: str, **params: Any) -> list[dict]:
    """Every item, page by page (`after` = last_id while has_more)."""
    items: list[dict] = []
    after: dict[str, str] = {}
    while True:
        page = list_page(http, conversation_id, **params, **after)
        items += page["data"]
        if not page["has_more"]:
            return items
        assert page["data"], page
        after = {"after": page["last_id"]}


def conversation_items(http: httpx.Client, conversation_id: str) -> list[dict]:
    """All the conversation's items, oldest first."""
    return walk_items(http, conversation_id, order="asc", limit=100)


def get_item(http: httpx.Client, conversation_id: str, item_id: str) -> dict[str, Any]:
    response = http.get(items_url(conversation_id, item_id))
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "ConversationItem")
    return response.json()


def ids_of(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def text_of(item: dict[str, Any]) -> str:
    return "".join(part["text"] for part in item["content"])


def user_message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "output_text", "text": text}]}


def numbered_messages(count: int, label: str = "item") -> list[dict[str, Any]]:
    return [user_message(f"{label} {n}") for n in range(count)]


def stored_user_message(text: str) -> dict[str, Any]:
    """How a user message is stored, its id aside."""
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
        "status": "completed",
    }


def without_id(item: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name != "id"}


# -- helpers: responses --------------------------------------------------------------------


def request_body(**fields: Any) -> dict[str, Any]:
    """A small greedy Responses request with `fields` laid over it; None removes a field."""
    body = {"model": MODEL, "input": HI, "max_output_tokens": 16, "temperature": 0, **fields}
    return {name: value for name, value in body.items() if value is not None}


def respond(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    """POST /v1/responses; assert 200, the schema and a finished answer; return the body."""
    response = http.post(RESPONSES_URL, json=request_body(**fields))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "Response")
    assert body["status"] in ("completed", "incomplete"), body
    return body


def count_tokens(http: httpx.Client, **fields: Any) -> int:
    response = http.post(COUNT_URL, json={"model": MODEL, **fields})
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def response_input_items(http: httpx.Client, response_id: str) -> list[dict]:
    """The stored response's input items, oldest first."""
    page = http.get(
        f"{RESPONSES_URL}/{response_id}/input_items", params={"order": "asc", "limit": 100}
    )
    assert page.status_code == 200, page.text
    assert page.json()["has_more"] is False
    return page.json()["data"]


def output_text(body: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def assert_output_appended(appended: list[dict], response: dict[str, Any]) -> None:
    """The appended items are the response's output items: same ids, kinds, roles and content."""
    assert ids_of(appended) == ids_of(response["output"])
    for stored, produced in zip(appended, response["output"], strict=True):
        assert_matches_schema(stored, "ConversationItem")
        for name in ("type", "role", "content"):
            assert stored.get(name) == produced.get(name), (name, stored, produced)


def assert_turn_appended(
    http: httpx.Client,
    conversation_id: str,
    before: list[dict],
    response: dict[str, Any],
    inputs: list[str],
    input_items: list[dict] | None = None,
) -> list[dict]:
    """After `before`, the conversation holds exactly the turn: one user message per text in
    `inputs` (the response's stored input items, when given), then the response's output.
    Returns the appended items."""
    items = conversation_items(http, conversation_id)
    assert items[: len(before)] == before
    appended = items[len(before) :]
    assert len(appended) == len(inputs) + len(response["output"]), appended
    given, produced = appended[: len(inputs)], appended[len(inputs) :]
    assert [without_id(item) for item in given] == [stored_user_message(t) for t in inputs]
    if input_items is not None:
        assert given == input_items
    assert_output_appended(produced, response)
    return appended


# -- helpers: routes and other users -------------------------------------------------------


def every_route(conversation_id: str, item_id: str) -> list[tuple[str, str, object]]:
    """(method, path, body) of every route that names this conversation; delete last."""
    return [
        ("GET", conversation_url(conversation_id), None),
        ("POST", conversation_url(conversation_id), {"metadata": {"changed": "yes"}}),
        ("GET", items_url(conversation_id), None),
        ("POST", items_url(conversation_id), {"items": [user_message("intruding")]}),
        ("GET", items_url(conversation_id, item_id), None),
        ("DELETE", items_url(conversation_id, item_id), None),
        ("DELETE", conversation_url(conversation_id), None),
    ]


def naming_requests(conversation_id: str) -> list[dict[str, Any]]:
    """Responses requests naming the conversation, by id and as an object."""
    return [
        request_body(conversation=conversation_id),
        request_body(conversation={"id": conversation_id}),
    ]


def assert_not_found_everywhere(
    send: Any, conversation_id: str, item_id: str = "msg_no_such_item"
) -> None:
    """`send(method, path, body)` gets a 404 envelope on every route of the conversation, and
    a 404 naming `conversation` from /v1/responses."""
    for method, path, body in every_route(conversation_id, item_id):
        assert_error_envelope(send(method, path, body), 404)
    for body in naming_requests(conversation_id):
        assert_error_envelope(send("POST", RESPONSES_URL, body), 404, param="conversation")


def sender(http: httpx.Client) -> Any:
    return lambda method, path, body: http.request(method, path, json=body)


def call_as(
    server: RunningServer, headers: dict[str, str], method: str, path: str, body: object = None
) -> httpx.Response:
    return httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=120)


def expire_response_now(server: RunningServer, response_id: str) -> None:
    """Make a stored response's retention run out now, as if its 30 days had passed.

    Black-box the clock cannot be moved, so this sets `responses.expires_at` in the server's
    database to the past; the server and `aiservice purge` then treat the response as expired.
    """
    url = make_url(server.database_url or f"sqlite:///{server.home / 'aiservice.db'}")
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(Path(url.database or ""), timeout=30)
        try:
            with connection:  # commits
                updated = connection.execute(
                    "UPDATE responses SET expires_at = 1 WHERE id = ?", (response_id,)
                ).rowcount
        finally:
            connection.close()
        assert updated == 1, response_id
        return
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def update() -> str:
        connection = await asyncpg.connect(plain, timeout=10)
        try:
            return await connection.execute(
                "UPDATE responses SET expires_at = 1 WHERE id = $1", response_id
            )
        finally:
            await connection.close()

    assert run_in_thread(update) == "UPDATE 1", response_id


# -- the conversation object ---------------------------------------------------------------


def test_an_empty_body_creates_an_empty_conversation(stored_http):
    before = int(time.time())
    created = create_conversation(stored_http)
    assert created["metadata"] == {}
    assert before - 1 <= created["created_at"] <= time.time() + 1
    assert get_conversation(stored_http, created["id"]) == created
    page = list_page(stored_http, created["id"])
    assert (page["data"], page["has_more"]) == ([], False)
    # Each conversation is a new one.
    assert create_conversation(stored_http)["id"] != created["id"]


def test_metadata_is_kept_and_retrieved(stored_http):
    metadata = {"topic": "weather", "test": uuid.uuid4().hex}
    created = create_conversation(stored_http, metadata=metadata, items=[user_message(HI)])
    assert created["metadata"] == metadata
    assert get_conversation(stored_http, created["id"]) == created


# Every input item form, and how each is stored (its id aside).
ITEM_FORMS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"role": "system", "content": "You are terse."},
        {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "You are terse."}],
            "status": "completed",
        },
    ),
    (
        {"role": "developer", "content": [{"type": "input_text", "text": "Answer in English."}]},
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Answer in English."}],
            "status": "completed",
        },
    ),
    (
        {"type": "message", "role": "user", "content": "What's the weather in Paris?"},
        stored_user_message("What's the weather in Paris?"),
    ),
    (
        {
            "type": "function_call",
            "call_id": "call_weather_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_weather_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
    ),
    (
        {"type": "function_call_output", "call_id": "call_weather_1", "output": '{"celsius": 21}'},
        {
            "type": "function_call_output",
            "call_id": "call_weather_1",
            "output": '{"celsius": 21}',
            "status": "completed",
        },
    ),
    (
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "It is 21 degrees in Paris.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
            "status": "completed",
        },
    ),
    (
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Anything else?"}],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Anything else?", "annotations": [], "logprobs": []}
            ],
            "status": "completed",
        },
    ),
    (
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Thanks. "},
                {"type": "input_text", "text": "And tomorrow?"},
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Thanks. "},
                {"type": "input_text", "text": "And tomorrow?"},
            ],
            "status": "completed",
        },
    ),
]
GIVEN_ITEMS = [given for given, _ in ITEM_FORMS]
STORED_ITEMS = [stored for _, stored in ITEM_FORMS]


def test_initial_items_are_stored_in_order_in_their_item_shapes(stored_http):
    created = create_conversation(stored_http, items=GIVEN_ITEMS)
    items = conversation_items(stored_http, created["id"])
    assert [without_id(item) for item in items] == STORED_ITEMS
    assert len(set(ids_of(items))) == len(items)
    for item in items:
        assert_matches_schema(item, "ConversationItem")
        assert isinstance(item["id"], str) and item["id"], item
        if item["type"] == "message":
            assert item["id"].startswith("msg_"), item
        if item["type"] == "function_call":
            assert item["id"].startswith("fc_"), item
        assert get_item(stored_http, created["id"], item["id"]) == item


def test_an_item_sent_with_an_id_keeps_it(stored_http):
    message_id, call_id = f"msg_{uuid.uuid4().hex}", f"fc_{uuid.uuid4().hex}"
    created = create_conversation(
        stored_http, items=[{"id": message_id, "type": "message", "role": "user", "content": HI}]
    )
    call = {
        "id": call_id,
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "{}",
    }
    added = add_items(stored_http, created["id"], [call])
    assert ids_of(added["data"]) == [call_id]
    assert ids_of(conversation_items(stored_http, created["id"])) == [message_id, call_id]
    assert get_item(stored_http, created["id"], message_id)["content"][0]["text"] == HI
    assert get_item(stored_http, created["id"], call_id) == {**call, "status": "completed"}


def test_update_replaces_the_metadata(stored_http):
    created = create_conversation(stored_http, metadata={"a": "1", "b": "2"})
    response = stored_http.post(conversation_url(created["id"]), json={"metadata": {"c": "3"}})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert_conversation_resource(updated)
    assert updated == {**created, "metadata": {"c": "3"}}  # replaced, not merged
    assert get_conversation(stored_http, created["id"]) == updated

    emptied = stored_http.post(conversation_url(created["id"]), json={"metadata": {}})
    assert emptied.status_code == 200, emptied.text
    assert emptied.json() == {**created, "metadata": {}}

    assert_error_envelope(stored_http.post(conversation_url(created["id"]), json={}), 400)
    assert get_conversation(stored_http, created["id"])["metadata"] == {}


def test_delete_removes_the_conversation_and_its_items(stored_http):
    doomed = create_conversation(stored_http, items=[user_message("one"), user_message("two")])
    kept = create_conversation(stored_http, items=[user_message("kept")])
    [item_id, _] = ids_of(conversation_items(stored_http, doomed["id"]))
    response = stored_http.delete(conversation_url(doomed["id"]))
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "DeletedConversationResource")
    deleted = {"id": doomed["id"], "object": "conversation.deleted", "deleted": True}
    assert response.json() == deleted
    assert_not_found_everywhere(sender(stored_http), doomed["id"], item_id)
    # The other conversation is untouched.
    assert get_conversation(stored_http, kept["id"]) == kept
    assert [text_of(item) for item in conversation_items(stored_http, kept["id"])] == ["kept"]


def test_an_unknown_conversation_or_item_is_not_found(stored_http):
    assert_not_found_everywhere(sender(stored_http), "conv_no_such_conversation")
    created = create_conversation(stored_http, items=[user_message(HI)])
    for method in ("GET", "DELETE"):
        missing = stored_http.request(method, items_url(created["id"], "msg_no_such_item"))
        assert_error_envelope(missing, 404)
    assert [text_of(item) for item in conversation_items(stored_http, created["id"])] == [HI]


# -- items ---------------------------------------------------------------------------------


def test_added_items_are_returned_in_the_order_given_and_appended(stored_http):
    created = create_conversation(stored_http, items=[user_message("first")])
    [first] = conversation_items(stored_http, created["id"])
    added = add_items(stored_http, created["id"], GIVEN_ITEMS)
    assert [without_id(item) for item in added["data"]] == STORED_ITEMS
    assert added["first_id"] == added["data"][0]["id"]
    assert added["last_id"] == added["data"][-1]["id"]
    assert conversation_items(stored_http, created["id"]) == [first, *added["data"]]


def test_items_paginate_in_both_orders_desc_by_default(stored_http):
    created = create_conversation(stored_http, items=numbered_messages(20))
    add_items(stored_http, created["id"], numbered_messages(5, "more"))
    asc = conversation_items(stored_http, created["id"])
    texts = [f"item {n}" for n in range(20)] + [f"more {n}" for n in range(5)]
    assert [text_of(item) for item in asc] == texts
    ids = ids_of(asc)
    # Defaults: newest first, 20 to a page.
    first_page = list_page(stored_http, created["id"])
    assert ids_of(first_page["data"]) == ids[::-1][:20]
    assert first_page["has_more"] is True
    assert ids_of(walk_items(stored_http, created["id"])) == ids[::-1]
    whole = list_page(stored_http, created["id"], limit=100)
    assert (ids_of(whole["data"]), whole["has_more"]) == (ids[::-1], False)
    for limit in (1, 7, 25):
        for order, expected in (("asc", ids), ("desc", ids[::-1])):
            walked = walk_items(stored_http, created["id"], limit=limit, order=order)
            assert ids_of(walked) == expected, (limit, order)
    after_third = list_page(stored_http, created["id"], order="asc", after=ids[2], limit=2)
    assert ids_of(after_third["data"]) == ids[3:5] and after_third["has_more"] is True


def test_deleting_an_item_returns_the_conversation_and_removes_only_it(stored_http):
    created = create_conversation(
        stored_http, metadata={"k": "v"}, items=numbered_messages(3, "keep")
    )
    first, middle, last = conversation_items(stored_http, created["id"])
    response = stored_http.delete(items_url(created["id"], middle["id"]))
    assert response.status_code == 200, response.text
    assert_conversation_resource(response.json())
    assert response.json() == created
    assert conversation_items(stored_http, created["id"]) == [first, last]
    for method in ("GET", "DELETE"):
        gone = stored_http.request(method, items_url(created["id"], middle["id"]))
        assert_error_envelope(gone, 404)
    assert get_item(stored_http, created["id"], last["id"]) == last


@pytest.fixture(scope="module")
def shared_conversation_id(http: httpx.Client) -> str:
    """A conversation with one item on the session server, for request validation."""
    return create_conversation(http, items=[user_message(HI)])["id"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
    ],
    ids=["limit-0", "limit-101", "limit-not-a-number", "order-sideways"],
)
def test_list_query_errors_name_the_parameter(http, shared_conversation_id, params, param):
    response = http.get(items_url(shared_conversation_id), params=params)
    assert_error_envelope(response, 400, param=param)


def test_list_limit_bounds_are_inclusive(http, shared_conversation_id):
    for limit in (1, 100):
        page = list_page(http, shared_conversation_id, limit=limit)
        assert [text_of(item) for item in page["data"]] == [HI], limit


def test_at_most_20_items_at_a_time(http):
    too_many = http.post(URL, json={"items": numbered_messages(21)})
    assert_error_envelope(too_many, 400, param="items")
    created = create_conversation(http, items=numbered_messages(20))
    for refused in ([], numbered_messages(21)):
        response = http.post(items_url(created["id"]), json={"items": refused})
        assert_error_envelope(response, 400, param="items")
    assert len(conversation_items(http, created["id"])) == 20  # nothing was added
    assert len(add_items(http, created["id"], numbered_messages(20))["data"]) == 20
    assert len(conversation_items(http, created["id"])) == 40


INVALID_ITEMS = {
    "bad-role": {"role": "robot", "content": HI},
    "unknown-type": {"type": "nonsense"},
    "message-without-content": {"role": "user"},
    "function-call-output-without-call-id": {"type": "function_call_output", "output": "21"},
}


@pytest.mark.parametrize("item", INVALID_ITEMS.values(), ids=INVALID_ITEMS.keys())
def test_an_invalid_item_is_refused(http, shared_conversation_id, item):
    assert_error_envelope(http.post(URL, json={"items": [item]}), 400)
    added = http.post(items_url(shared_conversation_id), json={"items": [item]})
    assert_error_envelope(added, 400)
    assert [text_of(item) for item in conversation_items(http, shared_conversation_id)] == [HI]


BAD_METADATA = {
    "17-pairs": {f"k{i}": "v" for i in range(17)},
    "65-char-key": {"k" * 65: "v"},
    "513-char-value": {"k": "v" * 513},
}


@pytest.mark.parametrize("metadata", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_metadata_over_the_limits_is_refused(http, shared_conversation_id, metadata):
    assert_error_envelope(http.post(URL, json={"metadata": metadata}), 400, param="metadata")
    update = http.post(conversation_url(shared_conversation_id), json={"metadata": metadata})
    assert_error_envelope(update, 400, param="metadata")
    assert get_conversation(http, shared_conversation_id)["metadata"] == {}


def test_metadata_at_the_limits_is_kept(http):
    metadata = {f"k{i}": "v" for i in range(14)} | {"k" * 64: "v", "long": "v" * 512}
    assert len(metadata) == 16
    created = create_conversation(http, metadata=metadata)
    assert created["metadata"] == metadata
    updated = http.post(conversation_url(created["id"]), json={"metadata": metadata})
    assert updated.status_code == 200 and updated.json()["metadata"] == metadata


# -- the SDK -------------------------------------------------------------------------------


def test_sdk_manages_conversations_and_their_items(stored_client: OpenAI):
    conversations = stored_client.conversations
    conversation = conversations.create(
        items=[{"role": "user", "content": "one"}], metadata={"via": "sdk"}
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"via": "sdk"}
    assert conversations.retrieve(conversation.id).created_at == conversation.created_at
    assert conversations.update(conversation.id, metadata={"v": "2"}).metadata == {"v": "2"}

    added = conversations.items.create(
        conversation.id,
        items=[
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    )
    assert [item.role for item in added.data] == ["assistant", "user"]
    # Auto-pagination, two at a time, both orders.
    listed = list(conversations.items.list(conversation.id, limit=2, order="asc"))
    assert [item.content[0].text for item in listed] == ["one", "two", "three"]
    newest_first = list(conversations.items.list(conversation.id, limit=2))
    assert [item.id for item in newest_first] == [item.id for item in listed][::-1]

    retrieved = conversations.items.retrieve(listed[1].id, conversation_id=conversation.id)
    assert (retrieved.id, retrieved.role) == (listed[1].id, "assistant")
    after_delete = conversations.items.delete(listed[1].id, conversation_id=conversation.id)
    assert (after_delete.id, after_delete.metadata) == (conversation.id, {"v": "2"})
    remaining = conversations.items.list(conversation.id, order="asc")
    assert [item.id for item in remaining] == [listed[0].id, listed[2].id]

    deleted = conversations.delete(conversation.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        conversation.id,
        True,
        "conversation.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        conversations.items.list(conversation.id)


def test_sdk_creates_a_response_in_a_conversation(client: OpenAI):
    conversation = client.conversations.create()
    response = client.responses.create(
        model=MODEL,
        input=HI,
        conversation=conversation.id,
        max_output_tokens=16,
        temperature=0,
    )
    assert response.conversation is not None and response.conversation.id == conversation.id
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [item.id for item in items[1:]] == [item.id for item in response.output]
    assert (items[0].role, items[0].content[0].text) == ("user", HI)
    assert items[1].content[0].text == response.output_text


def test_background_turns_of_one_conversation_run_one_after_the_other(client: OpenAI):
    """Two turns made at once, with workers free for both: the second waits for the first
    and reads it (same question, yet more input), and the items do not interleave."""
    conversation = client.conversations.create()
    turns = [
        client.responses.create(
            model=MODEL,
            input="Name a colour.",
            conversation=conversation.id,
            background=True,
            store=True,
            max_output_tokens=16,
            temperature=0,
        )
        for _ in range(2)
    ]
    first, second = (
        wait_until(
            # "incomplete" too: 16 tokens may cut the answer short.
            lambda turn=turn: (
                (done := client.responses.retrieve(turn.id)).status in ("completed", "incomplete")
                and done
            ),
            timeout=120,
            what="both turns to end",
        )
        for turn in turns
    )
    assert second.usage.input_tokens >= first.usage.input_tokens + first.usage.output_tokens
    items = [item.id for item in client.conversations.items.list(conversation.id, order="asc")]
    assert items[1 : 1 + len(first.output)] == [item.id for item in first.output]
    assert items[-len(second.output) :] == [item.id for item in second.output]


# -- other users ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stranger(stored_server: RunningServer) -> dict[str, str]:
    """Bearer headers of a second user of the stored server."""
    email = new_email("stranger")
    admin_add_user(stored_server, email, f"stranger-password-{uuid.uuid4().hex[:8]}")
    return bearer(admin_create_key(stored_server, email))


def test_another_user_gets_404_on_every_route_and_in_responses(
    stored_server: RunningServer, stored_http, stranger
):
    created = create_conversation(
        stored_http, metadata={"who": "owner"}, items=[user_message("one"), user_message("two")]
    )
    items = conversation_items(stored_http, created["id"])

    def as_stranger(method: str, path: str, body: object) -> httpx.Response:
        return call_as(stored_server, stranger, method, path, body)

    assert_not_found_everywhere(as_stranger, created["id"], items[0]["id"])
    # Word for word the answer about a conversation that never existed.
    missing = f"conv_{uuid.uuid4().hex}"
    theirs = as_stranger("GET", conversation_url(created["id"]), None).json()["error"]
    never = as_stranger("GET", conversation_url(missing), None).json()["error"]
    assert theirs == {**never, "message": never["message"].replace(missing, created["id"])}
    # The owner's conversation is intact.
    assert get_conversation(stored_http, created["id"]) == created
    assert conversation_items(stored_http, created["id"]) == items


# -- responses in a conversation -----------------------------------------------------------


@dataclass(frozen=True)
class TwoTurns:
    """Two responses in one conversation, with what was observed around them."""

    conversation_id: str
    first: dict[str, Any]
    second: dict[str, Any]
    first_inputs: list[dict]  # the stored input items of each response
    second_inputs: list[dict]
    counted_before_second: int  # input_tokens of the second request, counted before it ran
    items_after_first: list[dict]


FIRST_INPUT = "My name is Ada."
SECOND_INPUT = "What is my name?"


@pytest.fixture(scope="module")
def two_turns(stored_http: httpx.Client) -> TwoTurns:
    conversation_id = create_conversation(stored_http)["id"]
    first = respond(stored_http, input=FIRST_INPUT, conversation=conversation_id)
    items_after_first = conversation_items(stored_http, conversation_id)
    counted = count_tokens(stored_http, input=SECOND_INPUT, conversation=conversation_id)
    second = respond(stored_http, input=SECOND_INPUT, conversation={"id": conversation_id})
    return TwoTurns(
        conversation_id,
        first,
        second,
        response_input_items(stored_http, first["id"]),
        response_input_items(stored_http, second["id"]),
        counted,
        items_after_first,
    )


def test_a_response_names_its_conversation(stored_http, two_turns: TwoTurns):
    for response in (two_turns.first, two_turns.second):
        assert response["conversation"] == {"id": two_turns.conversation_id}
        stored = stored_http.get(f"{RESPONSES_URL}/{response['id']}")
        assert stored.status_code == 200, stored.text
        assert stored.json()["conversation"] == {"id": two_turns.conversation_id}


def test_each_turn_appends_its_input_then_its_output_with_the_same_ids(
    stored_http, two_turns: TwoTurns
):
    first, second = two_turns.first, two_turns.second
    assert [text_of(item) for item in two_turns.first_inputs] == [FIRST_INPUT]
    assert [text_of(item) for item in two_turns.second_inputs] == [SECOND_INPUT]
    after_first = two_turns.items_after_first
    assert after_first[:1] == two_turns.first_inputs
    assert_output_appended(after_first[1:], first)

    items = conversation_items(stored_http, two_turns.conversation_id)
    assert ids_of(items) == ids_of(
        two_turns.first_inputs + first["output"] + two_turns.second_inputs + second["output"]
    )
    assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
    texts = [FIRST_INPUT, output_text(first), SECOND_INPUT, output_text(second)]
    assert [text_of(item) for item in items] == texts
    for item in items:
        assert get_item(stored_http, two_turns.conversation_id, item["id"]) == item


def test_the_second_turn_sees_the_first(stored_http, two_turns: TwoTurns):
    first_usage = two_turns.first["usage"]
    second_input_tokens = two_turns.second["usage"]["input_tokens"]
    assert second_input_tokens > first_usage["input_tokens"] + first_usage["output_tokens"]
    assert second_input_tokens == two_turns.counted_before_second
    # The context is the conversation's items in order, then the request's input.
    replay = [
        user_message(FIRST_INPUT),
        assistant_message(output_text(two_turns.first)),
        user_message(SECOND_INPUT),
    ]
    assert second_input_tokens == count_tokens(stored_http, input=replay)


def test_initial_items_are_the_context_before_the_input(http):
    created = create_conversation(http, items=GIVEN_ITEMS)
    question = "Will it rain?"
    counted = count_tokens(http, input=question, conversation=created["id"])
    assert counted == count_tokens(http, input=[*GIVEN_ITEMS, user_message(question)])
    assert counted > count_tokens(http, input=question)
    before = conversation_items(http, created["id"])
    response = respond(http, input=question, conversation=created["id"])
    assert response["usage"]["input_tokens"] == counted
    inputs = response_input_items(http, response["id"])
    assert_turn_appended(http, created["id"], before, response, [question], inputs)


def test_an_unstored_response_still_appends_its_turn(http):
    created = create_conversation(http, items=[user_message("Hello there.")])
    before = conversation_items(http, created["id"])
    response = respond(http, store=False, conversation=created["id"])
    assert response["store"] is False
    assert response["conversation"] == {"id": created["id"]}
    assert_turn_appended(http, created["id"], before, response, [HI])
    assert_error_envelope(http.get(f"{RESPONSES_URL}/{response['id']}"), 404)


def test_a_streamed_response_is_appended_when_the_stream_ends(http):
    created = create_conversation(http)
    body = request_body(stream=True, conversation=created["id"], max_output_tokens=24)
    streamed = http.post(RESPONSES_URL, json=body)
    assert streamed.status_code == 200, streamed.text
    events = responses_sse_events(streamed)
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    final = events[-1]["response"]
    assert_matches_schema(final, "Response")
    assert final["conversation"] == {"id": created["id"]}
    inputs = response_input_items(http, final["id"])
    assert_turn_appended(http, created["id"], [], final, [HI], inputs)


def wait_finished(http: httpx.Client, response_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        body = http.get(f"{RESPONSES_URL}/{response_id}").json()
        return body if body["status"] in TERMINAL else None

    return wait_until(finished, timeout=60, what=f"response {response_id} to finish")


def test_a_background_response_is_appended_when_its_job_ends(http):
    created = create_conversation(http, items=[user_message("Hello there.")])
    before = conversation_items(http, created["id"])
    queued = http.post(
        RESPONSES_URL, json=request_body(background=True, conversation={"id": created["id"]})
    )
    assert queued.status_code == 200, queued.text
    assert queued.json()["status"] in ("queued", "in_progress")
    assert queued.json()["conversation"] == {"id": created["id"]}
    finished = wait_finished(http, queued.json()["id"])
    assert_matches_schema(finished, "Response")
    assert finished["status"] in ("completed", "incomplete"), finished
    assert finished["conversation"] == {"id": created["id"]}
    inputs = response_input_items(http, finished["id"])
    assert_turn_appended(http, created["id"], before, finished, [HI], inputs)


@pytest.fixture(scope="module")
def queue_only_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A `serve --no-worker` server: background jobs stay queued until cancelled."""
    server = start_server(
        tmp_path_factory.mktemp("conversations-no-worker"),
        env=NO_DATABASE_URL,
        args=["--no-worker"],
    )
    try:
        with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=120) as raw:
            yield raw
    finally:
        stop_server(server)


def test_a_cancelled_background_response_appends_nothing(queue_only_http):
    created = create_conversation(queue_only_http, items=[user_message("Hello there.")])
    before = conversation_items(queue_only_http, created["id"])
    queued = queue_only_http.post(
        RESPONSES_URL, json=request_body(background=True, conversation=created["id"])
    )
    assert queued.status_code == 200, queued.text
    assert queued.json()["status"] == "queued"
    cancelled = queue_only_http.post(f"{RESPONSES_URL}/{queued.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["conversation"] == {"id": created["id"]}
    assert conversation_items(queue_only_http, created["id"]) == before


def test_refused_requests_name_the_conversation_and_append_nothing(http):
    created = create_conversation(http, items=[user_message("Hello there.")])
    before = conversation_items(http, created["id"])
    earlier = respond(http)
    for conversation in (created["id"], {"id": created["id"]}):
        body = request_body(conversation=conversation, previous_response_id=earlier["id"])
        assert_error_envelope(http.post(RESPONSES_URL, json=body), 400, param="conversation")
    for body in naming_requests("conv_no_such_conversation"):
        assert_error_envelope(http.post(RESPONSES_URL, json=body), 404, param="conversation")
    assert conversation_items(http, created["id"]) == before


def test_items_outlive_the_responses_that_added_them(stored_server: RunningServer, stored_http):
    created = create_conversation(stored_http)
    response = respond(stored_http, conversation=created["id"])
    items = conversation_items(stored_http, created["id"])
    assert len(items) == 1 + len(response["output"])

    expire_response_now(stored_server, response["id"])
    purged = server_cli(stored_server, "purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    counts = re.search(r"responses: (\d+)", purged.stdout)
    assert counts and int(counts.group(1)) >= 1, purged.stdout
    assert_error_envelope(stored_http.get(f"{RESPONSES_URL}/{response['id']}"), 404)
    # The conversation and every item are still there, and still the context.
    assert get_conversation(stored_http, created["id"]) == created
    assert conversation_items(stored_http, created["id"]) == items
    replay = [user_message(HI), assistant_message(output_text(response)), user_message("More?")]
    kept = count_tokens(stored_http, input="More?", conversation=created["id"])
    assert kept == count_tokens(stored_http, input=replay)
