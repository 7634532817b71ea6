"""`item_reference` input items: an earlier stored item named by its id, as Vercel's `ai`
sends earlier turns of a chat on the Responses API with `store: true`.

Run once per backend (`[sqlite]`, `[postgres]`) on the stored servers, through the official
SDK and raw HTTP; every answer is validated against OpenAI's schemas.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from openai import OpenAI

from support import (
    RunningServer,
    admin_add_user,
    admin_create_key,
    assert_error_envelope,
    assert_matches_schema,
    bearer,
    new_email,
)

URL = "/v1/responses"
COUNT_URL = "/v1/responses/input_tokens"
MODEL = "gpt-4o-mini"


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "max_output_tokens": 16, "temperature": 0, **fields}
    response = http.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "Response")
    return response.json()


def input_items(http: httpx.Client, response_id: str) -> list[dict[str, Any]]:
    response = http.get(f"{URL}/{response_id}/input_items", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def count(http: httpx.Client, items: list[dict[str, Any]]) -> int:
    response = http.post(COUNT_URL, json={"model": MODEL, "input": items})
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def reference(item_id: str) -> dict[str, str]:
    return {"type": "item_reference", "id": item_id}


@pytest.fixture(scope="module")
def earlier(stored_http: httpx.Client) -> dict[str, Any]:
    """A stored turn whose input and output items later requests refer to."""
    return create(stored_http, input=[{"role": "user", "content": "My name is Ada."}])


def test_a_reference_to_an_earlier_output_reads_like_the_item_itself(stored_http, earlier):
    answer = earlier["output"][0]
    question = {"role": "user", "content": "What is my name?"}
    second = create(stored_http, input=[reference(answer["id"]), question])
    # The model saw the referenced item: the same prompt as sending the item in full.
    spelled_out = {"role": "assistant", "content": answer["content"], "type": "message"}
    assert second["usage"]["input_tokens"] == count(stored_http, [spelled_out, question])
    assert count(stored_http, [reference(answer["id"]), question]) == count(
        stored_http, [spelled_out, question]
    )
    # Stored with the item it resolved to, under the item's own id.
    stored = input_items(stored_http, second["id"])
    assert stored[0]["id"] == answer["id"]
    assert stored[0]["type"] == "message" and stored[0]["role"] == "assistant"
    assert stored[0]["content"] == answer["content"]


def test_a_reference_to_an_earlier_input_item_works_too(stored_http, earlier):
    asked = input_items(stored_http, earlier["id"])[0]
    again = create(stored_http, input=[reference(asked["id"])])
    assert again["usage"]["input_tokens"] == earlier["usage"]["input_tokens"]


def test_the_sdk_sends_references_like_vercels_provider(stored_client: OpenAI, earlier):
    response = stored_client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "My name is Ada."},
            {"type": "item_reference", "id": earlier["output"][0]["id"]},
            {"role": "user", "content": "Say it again."},
        ],
        max_output_tokens=16,
    )
    assert response.status in ("completed", "incomplete")  # 16 tokens may not end the reply
    assert response.usage is not None and response.usage.input_tokens > 0


def test_an_unknown_reference_is_a_404_naming_the_id(stored_http):
    missing = f"msg_{uuid.uuid4().hex}"
    response = stored_http.post(
        URL, json={"model": MODEL, "input": [{"role": "user", "content": "Hi"}, reference(missing)]}
    )
    assert_error_envelope(response, 404, param="input[1]")
    assert missing in response.json()["error"]["message"]


def test_someone_elses_item_is_as_unknown_as_a_missing_one(
    stored_server: RunningServer, stored_http, earlier
):
    email = new_email("referrer")
    admin_add_user(stored_server, email, f"referrer-password-{uuid.uuid4().hex[:8]}")
    headers = bearer(admin_create_key(stored_server, email))
    theirs, missing = earlier["output"][0]["id"], f"msg_{uuid.uuid4().hex}"
    answers = {
        item_id: httpx.post(
            stored_server.base_url + URL,
            json={"model": MODEL, "input": [reference(item_id)]},
            headers=headers,
            timeout=60,
        )
        for item_id in (theirs, missing)
    }
    for item_id, response in answers.items():
        assert_error_envelope(response, 404, param="input[0]")
        message = response.json()["error"]["message"]
        assert message == f"Item with id '{item_id}' not found."


def test_a_deleted_responses_items_can_no_longer_be_referenced(stored_http):
    gone = create(stored_http, input="Hi")
    item_id = gone["output"][0]["id"]
    assert stored_http.delete(f"{URL}/{gone['id']}").status_code == 200
    response = stored_http.post(URL, json={"model": MODEL, "input": [reference(item_id)]})
    assert_error_envelope(response, 404, param="input[0]")


def test_a_reference_without_an_id_is_a_400(stored_http):
    response = stored_http.post(URL, json={"model": MODEL, "input": [{"type": "item_reference"}]})
    assert_error_envelope(response, 400, param="input[0]")


def test_conversation_items_may_be_references_too(stored_http, earlier):
    answer = earlier["output"][0]
    created = stored_http.post("/v1/conversations", json={"items": [reference(answer["id"])]})
    assert created.status_code == 200, created.text
    conversation_id = created.json()["id"]
    listed = stored_http.get(f"/v1/conversations/{conversation_id}/items").json()["data"]
    assert [(item["id"], item["content"]) for item in listed] == [(answer["id"], answer["content"])]
    missing = f"msg_{uuid.uuid4().hex}"
    added = stored_http.post(
        f"/v1/conversations/{conversation_id}/items", json={"items": [reference(missing)]}
    )
    assert_error_envelope(added, 404, param="items[0]")
    # A response in the conversation may name one of its items: the model sees it once (it
    # is in the context already) and the conversation does not hold it twice.
    question = {"role": "user", "content": "What is my name?"}
    plain = create(stored_http, conversation={"id": conversation_id}, input=[question])
    plain_id = next(i["id"] for i in input_items(stored_http, plain["id"]))
    asked_again = create(
        stored_http,
        conversation={"id": conversation_id},
        input=[reference(answer["id"]), reference(plain_id)],
    )
    assert asked_again["usage"]["input_tokens"] > plain["usage"]["input_tokens"]
    held = stored_http.get(
        f"/v1/conversations/{conversation_id}/items", params={"limit": 100}
    ).json()["data"]
    ids = [item["id"] for item in held]
    assert len(ids) == len(set(ids)) and answer["id"] in ids
    # An item sent with an id the conversation already holds is a 400, not a duplicate.
    clash = stored_http.post(
        URL,
        json={
            "model": MODEL,
            "conversation": {"id": conversation_id},
            "input": [{"id": answer["id"], **question}],
        },
    )
    assert_error_envelope(clash, 400, param="input[0]")
