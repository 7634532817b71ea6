"""`GET /v1/usage?group_by=endpoint` on a real server, on both storage backends: chat (both chat
routes), responses, embeddings, moderations and an e-mail feature, each counted under its short
name, the endpoints summing to the ungrouped totals, and `group_by=day,endpoint`. Moderations
are metered too: their record names the classifier, estimates the texts' tokens, costs nothing.

Each test makes a user (and key) of its own on the session's shared server, so the totals it
reads are those of its own requests only; the usage API flushes the ledger before it answers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import BadRequestError, OpenAI

from aiservice.moderation.local import LocalModerator
from aiservice.tokens import estimate_tokens
from support import RunningServer, bearer
from usage_support import Account, new_account, table_rows, usage_data

MODEL = "gpt-4o-mini"  # the local SmolLM2 on the shared servers
EMBEDDING_MODEL = "all-minilm-l6-v2"
MODERATED = "Could we meet on Tuesday at 10?"
PROMPT = [{"role": "user", "content": "Say hello."}]
SUMMED = ("requests", "input_tokens", "output_tokens", "total_tokens", "errors")


def sdk_for(server: RunningServer, account: Account) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0, timeout=120)


def make_requests(server: RunningServer, account: Account) -> None:
    """Two chats on /v1, one on the seed route, a response, embeddings, two moderations (one
    refused: 400) and the e-mail assistant's reply."""
    sdk = sdk_for(server, account)
    for _ in range(2):
        sdk.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2)  # type: ignore[arg-type]
    sdk.responses.create(model=MODEL, input="Say hello.", max_output_tokens=16)
    sdk.embeddings.create(model=EMBEDDING_MODEL, input=["one", "two"])
    assert sdk.moderations.create(input=MODERATED).results
    with pytest.raises(BadRequestError):
        sdk.moderations.create(input=[])
    with httpx.Client(base_url=server.base_url, headers=bearer(account.key), timeout=120) as http:
        seed = http.post(
            "/api/ai/chat/completions", json={"model": MODEL, "messages": PROMPT, "max_tokens": 2}
        )
        assert seed.status_code == 200, seed.text
        reply = http.post(
            "/api/ai/email/reply",
            json={"email_content": "Bonjour, la réunion tient toujours ?", "max_tokens": 4},
        )
        assert reply.status_code == 200, reply.text


def test_usage_grouped_by_endpoint_counts_each_endpoint(stored_server: RunningServer) -> None:
    account = new_account(stored_server, "by-endpoint")
    make_requests(stored_server, account)

    rows = usage_data(stored_server, account.key, group_by="endpoint")
    by_endpoint = {row["endpoint"]: row for row in rows}
    assert {name: row["requests"] for name, row in by_endpoint.items()} == {
        "chat": 3,
        "email.reply": 1,
        "embeddings": 1,
        "moderations": 2,
        "responses": 1,
    }
    assert {name: row["errors"] for name, row in by_endpoint.items() if row["errors"]} == {
        "moderations": 1
    }
    assert by_endpoint["embeddings"]["input_tokens"] > 0
    assert by_endpoint["chat"]["output_tokens"] > 0
    [total] = usage_data(stored_server, account.key)
    for field in SUMMED:
        assert sum(row[field] for row in rows) == total[field], field
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(total["cost_usd"])

    by_day = usage_data(stored_server, account.key, group_by="day,endpoint")
    assert all(set(row) >= {"day", "endpoint"} for row in by_day)
    summed: dict[str, int] = {}
    for row in by_day:
        summed[row["endpoint"]] = summed.get(row["endpoint"], 0) + row["requests"]
    assert summed == {name: row["requests"] for name, row in by_endpoint.items()}


def test_a_moderation_is_recorded_with_its_classifier_and_no_cost(
    stored_server: RunningServer,
) -> None:
    account = new_account(stored_server, "moderation-usage")
    sdk = sdk_for(stored_server, account)
    sdk.moderations.create(input=[MODERATED, "Merci."], model="text-moderation-latest")
    with pytest.raises(BadRequestError):
        sdk.moderations.create(input=[])

    [model_row] = [
        row
        for row in usage_data(stored_server, account.key, group_by="endpoint,model")
        if row["model"] is not None
    ]
    tokens = estimate_tokens(len(MODERATED) + len("Merci."))
    assert model_row == {
        "endpoint": "moderations",
        "model": LocalModerator.name,
        "requests": 1,
        "input_tokens": tokens,
        "output_tokens": 0,
        "total_tokens": tokens,
        "cost_usd": 0.0,
        "errors": 0,
    }
    records = [row for row in table_rows(stored_server) if row["key_id"] == account.key_id]
    answered, refused = sorted(records, key=lambda row: row["status_code"])
    assert_record(answered, account, 200, "text-moderation-latest", LocalModerator.name)
    assert_record(refused, account, 400, None, None)
    assert refused["input_tokens"] == 0 and refused["error_code"]


def assert_record(
    record: dict[str, Any], account: Account, status: int, requested: str | None, served: str | None
) -> None:
    assert record["route"] == "/v1/moderations" and record["owner"] == account.user_id
    assert record["status_code"] == status
    assert (record["model_requested"], record["model_served"]) == (requested, served)
    assert record["provider"] is None and record["cost_usd"] == 0.0
