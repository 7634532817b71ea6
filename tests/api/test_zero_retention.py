"""Zero data retention against real servers on SQLite and PostgreSQL, through the official SDK:
a zero-retention key (or any key of a zero-retention user, or the user's Basic login) gets its
answers, streamed or not, with `store: true` treated as false; what needs storage is refused
with 400 `zero_data_retention`; afterwards the tables hold nothing of its requests but their
usage records, which keep tokens and cost and lose metadata and end user. A key of the same
user without the flag still stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy import select

from aiservice.store.tables import (
    Conversation,
    ConversationItem,
    DocumentAnalysis,
    ResponseItem,
    StoredBatch,
    StoredCompletion,
    StoredFile,
    StoredResponse,
)
from privacy_support import count_where
from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    basic_auth,
    bearer,
    new_email,
    wait_until,
)
from usage_support import database_url_of, get_usage, table_rows

MODEL = "gpt-4o-mini"
PASSWORD = "password-1234"
HELLO = [{"role": "user", "content": "Say hello."}]
CODE = "zero_data_retention"


@dataclass(frozen=True)
class ZdrAccount:
    user_id: str
    email: str
    zdr_key: str  # flagged zero retention
    zdr_key_id: str
    plain_key: str  # same user, no flag
    plain_key_id: str


def _admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30)


def new_zdr_account(server: RunningServer, *, user_flag: bool = False) -> ZdrAccount:
    email = new_email("zdr")
    with _admin(server) as admin:
        user = admin.post(
            "/v1/admin/users",
            json={"email": email, "password": PASSWORD, "zero_retention": user_flag},
        )
        assert user.status_code == 201, user.text
        flagged = admin.post(
            "/v1/admin/keys", json={"email": email, "name": "zdr", "zero_retention": True}
        )
        assert flagged.status_code == 201, flagged.text
        plain = admin.post("/v1/admin/keys", json={"email": email, "name": "plain"})
        assert plain.status_code == 201, plain.text
    return ZdrAccount(
        user.json()["id"],
        email,
        flagged.json()["key"],
        flagged.json()["id"],
        plain.json()["key"],
        plain.json()["id"],
    )


def sdk(server: RunningServer, key: str) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=key, max_retries=0, timeout=120)


def stored_counts(server: RunningServer, owner: str) -> dict[str, int]:
    """The owner's rows in every table that holds request content."""
    url = database_url_of(server)
    counts = {
        table.__tablename__: count_where(url, table, table.owner == owner)
        for table in (
            StoredCompletion,
            StoredResponse,
            ResponseItem,
            Conversation,
            StoredFile,
            StoredBatch,
            DocumentAnalysis,
        )
    }
    theirs = select(Conversation.seq).where(Conversation.owner == owner)
    counts["conversation_items"] = count_where(
        url, ConversationItem, ConversationItem.conversation_seq.in_(theirs)
    )
    return counts


def nothing_stored(server: RunningServer, owner: str) -> None:
    counts = stored_counts(server, owner)
    assert counts == dict.fromkeys(counts, 0), counts


def usage_rows_of(server: RunningServer, key_id: str, count: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        assert get_usage(server, MASTER_KEY).status_code == 200  # flushes the ledger
        rows = [row for row in table_rows(server) if row["key_id"] == key_id]
        assert len(rows) <= count, rows
        return rows if len(rows) == count else None

    return wait_until(found, timeout=30, what=f"{count} usage records of {key_id}")


def converse(client: OpenAI, *, stored: bool = False) -> list[str]:
    """Chat and responses, streamed and not, all asking to be stored; returns their ids.
    Responses say whether they were stored (`stored`)."""
    tagged: dict[str, Any] = {"store": True, "metadata": {"user_id": "subject-42"}}
    chat = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=5, user="end-user-42", **tagged
    )
    assert chat.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
            **tagged,
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    response = client.responses.create(
        model=MODEL,
        input="Say hello.",
        max_output_tokens=16,
        extra_body={"safety_identifier": "end-user-42"},
        **tagged,
    )
    assert response.output_text and response.store is stored  # the truth, not the request
    events = list(
        client.responses.create(
            model=MODEL, input="Say hello.", max_output_tokens=16, stream=True, **tagged
        )
    )
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete"), final.type
    assert final.response.output and final.response.store is stored
    return [chat.id, chunks[0].id, response.id, final.response.id]


def test_a_zero_retention_key_is_answered_and_nothing_but_usage_is_stored(
    stored_server: RunningServer,
):
    account = new_zdr_account(stored_server)
    client = sdk(stored_server, account.zdr_key)
    chat_id, _, response_id, _ = converse(client)

    nothing_stored(stored_server, account.user_id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(chat_id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)
    rows = usage_rows_of(stored_server, account.zdr_key_id, 4)
    for row in rows:
        assert row["status_code"] == 200 and row["owner"] == account.user_id, row
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0, row
        assert row["model_served"] and row["route"], row
        assert row["metadata"] == {} and row["end_user"] is None, row


def test_a_key_of_the_same_user_without_the_flag_still_stores(stored_server: RunningServer):
    account = new_zdr_account(stored_server)
    converse(sdk(stored_server, account.plain_key), stored=True)
    counts = stored_counts(stored_server, account.user_id)
    assert (counts["chat_completions"], counts["responses"]) == (2, 2), counts
    assert counts["response_items"] > 0, counts
    plain_key_rows = usage_rows_of(stored_server, account.plain_key_id, 4)
    assert any(row["metadata"] == {"user_id": "subject-42"} for row in plain_key_rows)
    assert any(row["end_user"] == "end-user-42" for row in plain_key_rows)


def test_every_key_and_the_login_of_a_zero_retention_user_store_nothing(
    stored_server: RunningServer,
):
    account = new_zdr_account(stored_server, user_flag=True)
    converse(sdk(stored_server, account.plain_key))  # the key's own flag is off
    with httpx.Client(base_url=stored_server.base_url, timeout=120) as http:
        login = basic_auth(account.email, PASSWORD)
        body = {"model": MODEL, "messages": HELLO, "max_tokens": 5, "store": True}
        answered = http.post("/v1/chat/completions", json=body, headers=login)
        assert answered.status_code == 200, answered.text
    nothing_stored(stored_server, account.user_id)


def refusals(http: httpx.Client, conversation_id: str) -> dict[str, httpx.Response]:
    """Every request that would store content, as a zero-retention caller sends it."""
    respond = {"model": MODEL, "input": "Say hello.", "max_output_tokens": 16}
    jsonl = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    return {
        "background": http.post("/v1/responses", json={**respond, "background": True}),
        "conversation": http.post(
            "/v1/responses", json={**respond, "conversation": conversation_id}
        ),
        "batch": http.post(
            "/v1/batches",
            json={
                "input_file_id": "file-anything",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        ),
        "file": http.post(
            "/v1/files", files={"file": ("in.jsonl", jsonl)}, data={"purpose": "batch"}
        ),
        "new conversation": http.post("/v1/conversations", json={"metadata": {"a": "b"}}),
        "conversation items": http.post(
            f"/v1/conversations/{conversation_id}/items",
            json={"items": [{"type": "message", "role": "user", "content": "Hi"}]},
        ),
        "document analysis": http.post(
            "/api/ai/documents/analyses", json={"text": "A memo about Ann.", "model": MODEL}
        ),
    }


def test_what_needs_storage_is_refused_with_a_clear_400(stored_server: RunningServer):
    account = new_zdr_account(stored_server)
    # A conversation of the same user, made with the key that stores.
    with httpx.Client(
        base_url=stored_server.base_url, headers=bearer(account.plain_key), timeout=60
    ) as plain:
        created = plain.post("/v1/conversations", json={})
        assert created.status_code == 200, created.text
    conversation_id = created.json()["id"]
    before = stored_counts(stored_server, account.user_id)

    with httpx.Client(
        base_url=stored_server.base_url, headers=bearer(account.zdr_key), timeout=60
    ) as http:
        answers = refusals(http, conversation_id)
    params = {"background": "background", "conversation": "conversation"}
    for what, response in answers.items():
        if what == "document analysis":  # an /api/ai route: the seed's error shape
            assert response.status_code == 400, response.text
            body = response.json()
            assert body["success"] is False and "zero data retention" in body["error"], body
            continue
        error = assert_error_envelope(response, 400, code=CODE, param=params.get(what))
        assert "zero data retention" in error["message"], (what, error)
    assert stored_counts(stored_server, account.user_id) == before
    # The refusals on model routes are metered as the errors they are, and called no model.
    assert get_usage(stored_server, MASTER_KEY).status_code == 200
    for row in table_rows(stored_server):
        if row["key_id"] == account.zdr_key_id:
            assert (row["status_code"], row["error_code"]) == (400, CODE), row
            assert row["output_tokens"] == 0 and row["metadata"] == {}, row
    # The SDK says the same.
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(stored_server, account.zdr_key).responses.create(
            model=MODEL, input="Hi", max_output_tokens=16, background=True
        )
    assert refused.value.code == CODE
