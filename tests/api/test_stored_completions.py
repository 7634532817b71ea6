"""Stored chat completions through the official SDK, on SQLite and on PostgreSQL.

Every test runs once per backend (`[sqlite]`, `[postgres]`) against a server shared by the
session, so each one tags what it creates with a metadata value of its own and only looks at
completions carrying that tag. Bodies of the list, retrieve, update, delete and messages routes
are read raw as well and validated against OpenAI's spec.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

from support import (
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    assert_message_list_matches_schema,
    wait_for_access_line,
    wait_for_log_line,
)

URL = "/v1/chat/completions"
SERVED_MODEL = "smollm2-135m-instruct"  # what "gpt-4o-mini" resolves to, and is stored under
# SmolLM2's end-of-generation tokens, banned so that every completion has max_tokens tokens
# of content instead of possibly none.
NO_END = {"0": -100, "2": -100, "4": -100}
HELLO = [{"role": "user", "content": "Say hello."}]


def new_tag() -> dict[str, str]:
    """Metadata unique to one test, to find its completions on a shared server."""
    return {"test": uuid.uuid4().hex}


def create(
    client: OpenAI, metadata: dict[str, str] | None, *, store: bool | None = True, **extra: Any
) -> ChatCompletion:
    params: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "max_tokens": 3,
        "logit_bias": NO_END,
        **extra,
    }
    if store is not None:
        params["store"] = store
    if metadata is not None:
        params["metadata"] = metadata
    return client.chat.completions.create(**params)


def listed_ids(client: OpenAI, **params: Any) -> list[str]:
    """Every id the SDK's auto-pagination yields."""
    return [completion.id for completion in client.chat.completions.list(**params)]


def get_json(http: httpx.Client, path: str, schema: str, **params: Any) -> dict[str, Any]:
    """GET a stored-completion route; assert 200 and the body's schema; return the body."""
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    if schema == "ChatCompletionMessageList":
        assert_message_list_matches_schema(body)
    else:
        assert_matches_schema(body, schema)
    return body


def metadata_query(metadata: dict[str, str]) -> dict[str, str]:
    return {f"metadata[{key}]": value for key, value in metadata.items()}


def walk_raw_pages(http: httpx.Client, path: str, schema: str, **params: Any) -> list[str]:
    """Follow `after` = last_id while has_more, validating each page; return the ids seen."""
    ids: list[str] = []
    after: dict[str, str] = {}
    while True:
        page = get_json(http, path, schema, **params, **after)
        page_ids = [item["id"] for item in page["data"]]
        assert page["first_id"] == (page_ids[0] if page_ids else "")
        assert page["last_id"] == (page_ids[-1] if page_ids else "")
        ids += page_ids
        if not page["has_more"]:
            return ids
        assert page_ids, page
        after = {"after": page["last_id"]}


# -- listing -------------------------------------------------------------------------------


def test_auto_pagination_yields_every_completion_once_in_order(stored_client, stored_http):
    tag = new_tag()
    created = [create(stored_client, tag).id for _ in range(5)]

    assert listed_ids(stored_client, limit=2, metadata=tag) == created  # asc is the default
    assert listed_ids(stored_client, limit=2, metadata=tag, order="asc") == created
    assert listed_ids(stored_client, limit=2, metadata=tag, order="desc") == created[::-1]

    query = metadata_query(tag)
    for order, expected in (("asc", created), ("desc", created[::-1])):
        pages = walk_raw_pages(
            stored_http, URL, "ChatCompletionList", limit=2, order=order, **query
        )
        assert pages == expected
    # A page that ends exactly at the last one says so.
    last = get_json(stored_http, URL, "ChatCompletionList", limit=5, **query)
    assert [c["id"] for c in last["data"]] == created and last["has_more"] is False
    first = get_json(stored_http, URL, "ChatCompletionList", limit=4, **query)
    assert [c["id"] for c in first["data"]] == created[:4] and first["has_more"] is True


def test_an_empty_list_matches_the_spec(stored_http):
    body = get_json(stored_http, URL, "ChatCompletionList", **metadata_query(new_tag()))
    assert body == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}


def test_metadata_filter_requires_every_pair(stored_client, stored_http):
    tag = new_tag()
    red_small = create(stored_client, {**tag, "color": "red", "size": "s"}).id
    red_large = create(stored_client, {**tag, "color": "red", "size": "l"}).id
    blue_small = create(stored_client, {**tag, "color": "blue", "size": "s"}).id

    def matching(**pairs: str) -> list[str]:
        return listed_ids(stored_client, metadata={**tag, **pairs})

    assert matching() == [red_small, red_large, blue_small]
    assert matching(color="red") == [red_small, red_large]
    assert matching(size="s") == [red_small, blue_small]
    assert matching(color="red", size="s") == [red_small]
    assert matching(color="blue", size="l") == []
    assert matching(color="green") == []
    assert matching(shape="s") == []  # a key none of them has
    # Several pairs, page by page, both ways.
    both = {**tag, "color": "red"}
    assert listed_ids(stored_client, metadata=both, limit=1) == [red_small, red_large]
    assert listed_ids(stored_client, metadata=both, limit=1, order="desc") == [
        red_large,
        red_small,
    ]
    small = metadata_query({**tag, "size": "s"})
    for order, expected in (("asc", [red_small, blue_small]), ("desc", [blue_small, red_small])):
        walked = walk_raw_pages(
            stored_http, URL, "ChatCompletionList", limit=1, order=order, **small
        )
        assert walked == expected
    body = get_json(
        stored_http, URL, "ChatCompletionList", **metadata_query({**tag, "color": "red"})
    )
    assert [c["metadata"] for c in body["data"]] == [
        {**tag, "color": "red", "size": "s"},
        {**tag, "color": "red", "size": "l"},
    ]


def test_model_filter_uses_the_model_that_answered(stored_client, stored_http):
    tag = new_tag()
    created = [create(stored_client, tag) for _ in range(2)]
    assert {completion.model for completion in created} == {SERVED_MODEL}
    ids = [completion.id for completion in created]

    assert listed_ids(stored_client, metadata=tag, model=SERVED_MODEL) == ids
    for other in ("gpt-4o-mini", "gpt-4o", "no-such-model"):
        assert listed_ids(stored_client, metadata=tag, model=other) == [], other
    body = get_json(
        stored_http, URL, "ChatCompletionList", model=SERVED_MODEL, **metadata_query(tag)
    )
    assert [c["id"] for c in body["data"]] == ids


def test_unstored_completions_are_not_retrievable_or_listed(stored_client):
    tag = new_tag()
    not_stored = [create(stored_client, tag, store=False), create(stored_client, tag, store=None)]
    for completion in not_stored:
        with pytest.raises(openai.NotFoundError):
            stored_client.chat.completions.retrieve(completion.id)
    assert listed_ids(stored_client, metadata=tag) == []
    stored = create(stored_client, tag)
    assert listed_ids(stored_client, metadata=tag) == [stored.id]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "chatcmpl-no-such-completion"}, "after"),
    ],
    ids=["limit-0", "limit-101", "limit-not-a-number", "order-sideways", "after-unknown"],
)
def test_list_query_errors_name_the_parameter(stored_http, params, param):
    assert_error_envelope(stored_http.get(URL, params=params), 400, param=param)


def test_list_limit_bounds_are_inclusive(stored_client, stored_http):
    tag = new_tag()
    created = [create(stored_client, tag).id for _ in range(2)]
    for limit in (1, 100):
        body = get_json(stored_http, URL, "ChatCompletionList", limit=limit, **metadata_query(tag))
        assert [c["id"] for c in body["data"]] == created[:limit]


# -- retrieve, update, delete --------------------------------------------------------------


def test_retrieve_returns_what_create_answered(stored_client, stored_http):
    tag = new_tag()
    metadata = {**tag, "purpose": "retrieve"}
    created = create(stored_client, metadata, max_tokens=5)

    body = get_json(stored_http, f"{URL}/{created.id}", "CreateChatCompletionResponse")
    assert body["metadata"] == metadata
    retrieved = stored_client.chat.completions.retrieve(created.id)
    assert retrieved.id == created.id
    assert retrieved.object == "chat.completion"
    assert retrieved.created == created.created
    assert retrieved.model == created.model == SERVED_MODEL
    assert retrieved.choices == created.choices
    assert retrieved.choices[0].message.content == created.choices[0].message.content
    assert created.choices[0].message.content  # NO_END: five tokens of text
    assert retrieved.usage == created.usage
    assert retrieved.usage.completion_tokens == 5
    assert retrieved.metadata == metadata


def test_retrieve_of_an_unknown_id_is_not_found(stored_client, stored_http):
    with pytest.raises(openai.NotFoundError):
        stored_client.chat.completions.retrieve("chatcmpl-no-such-completion")
    assert_error_envelope(stored_http.get(f"{URL}/chatcmpl-no-such-completion"), 404)


def test_update_replaces_the_metadata(stored_client, stored_http):
    tag = new_tag()
    created = create(stored_client, {**tag, "stage": "draft", "owner": "me"})
    new = {**tag, "stage": "final"}

    response = stored_http.post(f"{URL}/{created.id}", json={"metadata": new})
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "CreateChatCompletionResponse")
    assert response.json()["metadata"] == new  # "owner" is gone, not merged in
    assert ChatCompletion.model_validate(response.json()).choices == created.choices

    assert stored_client.chat.completions.retrieve(created.id).metadata == new
    assert listed_ids(stored_client, metadata={**tag, "stage": "final"}) == [created.id]
    assert listed_ids(stored_client, metadata={**tag, "stage": "draft"}) == []
    assert listed_ids(stored_client, metadata={**tag, "owner": "me"}) == []

    again = {**tag, "stage": "archived"}
    updated = stored_client.chat.completions.update(created.id, metadata=again)
    assert updated.id == created.id and updated.metadata == again
    assert listed_ids(stored_client, metadata={**tag, "stage": "archived"}) == [created.id]
    assert listed_ids(stored_client, metadata={**tag, "stage": "final"}) == []


def test_update_with_null_metadata_clears_it(stored_client, stored_http):
    tag = new_tag()
    created = create(stored_client, tag)
    response = stored_http.post(f"{URL}/{created.id}", json={"metadata": None})
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "CreateChatCompletionResponse")
    assert response.json()["metadata"] == {}
    assert stored_client.chat.completions.update(created.id, metadata=None).metadata == {}
    assert stored_client.chat.completions.retrieve(created.id).metadata == {}
    assert listed_ids(stored_client, metadata=tag) == []


def test_delete_then_every_route_is_not_found(stored_client, stored_http):
    tag = new_tag()
    created = create(stored_client, tag)
    kept = create(stored_client, tag)

    response = stored_http.delete(f"{URL}/{created.id}")
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "ChatCompletionDeleted")
    assert response.json() == {
        "object": "chat.completion.deleted",
        "id": created.id,
        "deleted": True,
    }

    completions = stored_client.chat.completions
    for call in (
        lambda: completions.retrieve(created.id),
        lambda: completions.update(created.id, metadata={"a": "b"}),
        lambda: completions.delete(created.id),
        lambda: completions.messages.list(created.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    for method, path, body in (
        ("GET", f"{URL}/{created.id}", None),
        ("POST", f"{URL}/{created.id}", {"metadata": {}}),
        ("DELETE", f"{URL}/{created.id}", None),
        ("GET", f"{URL}/{created.id}/messages", None),
    ):
        assert_error_envelope(stored_http.request(method, path, json=body), 404)
    assert listed_ids(stored_client, metadata=tag) == [kept.id]


def test_delete_through_the_sdk(stored_client):
    created = create(stored_client, new_tag())
    deleted = stored_client.chat.completions.delete(created.id)
    assert (deleted.object, deleted.id, deleted.deleted) == (
        "chat.completion.deleted",
        created.id,
        True,
    )


# -- messages ------------------------------------------------------------------------------

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Name a colour. "}, {"type": "text", "text": "One."}],
    },
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
]


def test_messages_list_the_request_messages_in_order(stored_client, stored_http):
    created = create(stored_client, new_tag(), messages=CONVERSATION)
    path = f"{URL}/{created.id}/messages"

    body = get_json(stored_http, path, "ChatCompletionMessageList")
    roles = [item["role"] for item in body["data"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert [item["content"] for item in body["data"]] == [
        "You are terse.",
        "Name a colour. One.",
        "Blue.",
        "Another?",
    ]
    assert [item["content_parts"] for item in body["data"]] == [
        None,
        CONVERSATION[1]["content"],
        None,
        None,
    ]
    ids = [item["id"] for item in body["data"]]
    assert len(set(ids)) == 4
    assert (body["first_id"], body["last_id"], body["has_more"]) == (ids[0], ids[-1], False)

    sdk_messages = list(stored_client.chat.completions.messages.list(created.id))
    assert [m.id for m in sdk_messages] == ids
    assert [m.role for m in sdk_messages] == roles
    assert sdk_messages[1].content == "Name a colour. One."
    assert [part.text for part in sdk_messages[1].content_parts] == ["Name a colour. ", "One."]

    desc = get_json(stored_http, path, "ChatCompletionMessageList", order="desc")
    assert [item["id"] for item in desc["data"]] == ids[::-1]
    assert [item["role"] for item in desc["data"]] == roles[::-1]


def test_messages_paginate_with_limit_and_after(stored_client, stored_http):
    created = create(stored_client, new_tag(), messages=CONVERSATION)
    path = f"{URL}/{created.id}/messages"
    ids = [item["id"] for item in get_json(stored_http, path, "ChatCompletionMessageList")["data"]]

    first = get_json(stored_http, path, "ChatCompletionMessageList", limit=1)
    assert [item["id"] for item in first["data"]] == ids[:1] and first["has_more"] is True
    middle = get_json(stored_http, path, "ChatCompletionMessageList", limit=2, after=ids[0])
    assert [item["id"] for item in middle["data"]] == ids[1:3] and middle["has_more"] is True
    last = get_json(stored_http, path, "ChatCompletionMessageList", limit=2, after=ids[2])
    assert [item["id"] for item in last["data"]] == ids[3:] and last["has_more"] is False

    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        walked = walk_raw_pages(
            stored_http, path, "ChatCompletionMessageList", limit=1, order=order
        )
        assert walked == expected
        sdk = stored_client.chat.completions.messages.list(created.id, limit=1, order=order)
        assert [m.id for m in sdk] == expected


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"order": "up"}, "order"), ({"after": "msg-unknown"}, "after")],
    ids=["limit-0", "order-up", "after-unknown"],
)
def test_messages_query_errors_name_the_parameter(stored_client, stored_http, params, param):
    created = create(stored_client, new_tag())
    response = stored_http.get(f"{URL}/{created.id}/messages", params=params)
    assert_error_envelope(response, 400, param=param)


# -- what gets stored ----------------------------------------------------------------------


def test_a_streamed_completion_is_stored_whole(stored_client, stored_http):
    tag = new_tag()
    stream = stored_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        max_tokens=12,
        logit_bias=NO_END,
        store=True,
        metadata=tag,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12
    assert streamed

    stored = stored_client.chat.completions.retrieve(chunks[0].id)
    assert stored.choices[0].message.content == streamed
    assert stored.choices[0].message.role == "assistant"
    assert [stored.choices[0].finish_reason] == finish
    assert stored.usage == usage
    assert stored.metadata == tag
    assert (stored.created, stored.model) == (chunks[0].created, chunks[0].model)
    assert listed_ids(stored_client, metadata=tag) == [chunks[0].id]
    get_json(stored_http, f"{URL}/{chunks[0].id}", "CreateChatCompletionResponse")


def test_a_stream_the_client_abandons_is_not_stored(
    stored_server: RunningServer, stored_client, stored_http
):
    tag = new_tag()
    request_id = f"abandoned-{tag['test']}"
    max_tokens = 3000  # far more than the two chunks read: the generation is cut short
    after = len(stored_server.log_lines())
    body = {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "max_tokens": max_tokens,
        "logit_bias": NO_END,
        "store": True,
        "metadata": tag,
        "stream": True,
    }
    completion_id = None
    with stored_http.stream("POST", URL, json=body, headers={"x-request-id": request_id}) as sse:
        assert sse.status_code == 200
        received = 0
        for line in sse.iter_lines():
            if line.startswith("data: "):
                completion_id = json.loads(line[len("data: ") :])["id"]
                received += 1
                if received == 2:
                    break
    # Leaving the block closed the connection mid-stream.
    assert completion_id is not None

    cancelled = wait_for_log_line(
        stored_server,
        lambda line: (
            line.get("message") == "generation cancelled" and line.get("request_id") == request_id
        ),
        after=after,
        what="the abandoned stream's 'generation cancelled' line",
    )
    assert cancelled["completion_tokens"] < max_tokens
    # The access line is written once the request's handler (and so any save) has finished.
    wait_for_access_line(stored_server, request_id)
    assert listed_ids(stored_client, metadata=tag) == []
    with pytest.raises(openai.NotFoundError):
        stored_client.chat.completions.retrieve(completion_id)
    # The server still stores: a later completion with the same tag is the only one listed.
    later = create(stored_client, tag)
    assert listed_ids(stored_client, metadata=tag) == [later.id]


def test_every_choice_of_n_is_stored(stored_client, stored_http):
    tag = new_tag()
    created = create(stored_client, tag, n=2, max_tokens=4)
    assert len(created.choices) == 2

    stored = stored_client.chat.completions.retrieve(created.id)
    assert [c.index for c in stored.choices] == [0, 1]
    assert [c.message.content for c in stored.choices] == [
        c.message.content for c in created.choices
    ]
    assert stored.usage == created.usage
    assert stored.usage.completion_tokens == 8
    body = get_json(stored_http, URL, "ChatCompletionList", **metadata_query(tag))
    assert [len(c["choices"]) for c in body["data"]] == [2]


# -- metadata limits -----------------------------------------------------------------------

BAD_METADATA = {
    "17-pairs": {f"k{i}": "v" for i in range(17)},
    "65-char-key": {"k" * 65: "v"},
    "513-char-value": {"k": "v" * 513},
    "non-string-value": {"k": 1},
}
# A wrongly typed value is named by its path, as OpenAI does ("Invalid type for
# 'metadata.response_format'...", param "metadata.response_format"); the limits name "metadata".
BAD_METADATA_PARAM = {"non-string-value": "metadata.k"}
GOOD_EDGES = {
    "16-pairs": {f"k{i}": "v" for i in range(16)},
    "64-char-key": {"k" * 64: "v"},
    "512-char-value": {"k": "v" * 512},
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_metadata_over_the_limits_is_refused_on_create(stored_http, case):
    metadata = BAD_METADATA[case]
    tag = new_tag()
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 1, "store": True}
    response = stored_http.post(URL, json={**body, "metadata": {**metadata, **tag}})
    error = assert_error_envelope(response, 400)
    assert error["param"] == BAD_METADATA_PARAM.get(case, "metadata"), error
    assert get_json(stored_http, URL, "ChatCompletionList", **metadata_query(tag))["data"] == []


@pytest.mark.parametrize("case", BAD_METADATA)
def test_metadata_over_the_limits_is_refused_on_update(stored_client, stored_http, case):
    metadata = BAD_METADATA[case]
    tag = new_tag()
    created = create(stored_client, tag)
    response = stored_http.post(f"{URL}/{created.id}", json={"metadata": metadata})
    error = assert_error_envelope(response, 400)
    assert error["param"] == BAD_METADATA_PARAM.get(case, "metadata"), error
    assert stored_client.chat.completions.retrieve(created.id).metadata == tag  # unchanged


@pytest.mark.parametrize("metadata", GOOD_EDGES.values(), ids=GOOD_EDGES.keys())
def test_metadata_at_the_limits_is_stored(stored_client, metadata):
    created = create(stored_client, metadata)
    assert stored_client.chat.completions.retrieve(created.id).metadata == metadata
    tag = new_tag()
    updated = stored_client.chat.completions.update(created.id, metadata={**tag, "k": "v"})
    assert updated.metadata == {**tag, "k": "v"}
    assert stored_client.chat.completions.update(created.id, metadata=metadata).metadata == metadata
