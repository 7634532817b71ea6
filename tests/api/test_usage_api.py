"""`GET /v1/usage` on both storage backends: totals grouped by metadata, model, key, user and
day, over a time window; a user sees only their own usage, an admin everyone's.

Each test makes a user (and key) of its own on the session's shared server, so that the
totals it reads are those of its own requests only. The API flushes the server's ledger
before answering: a request's usage is there as soon as its answer has been read.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from support import MASTER_KEY, RunningServer, assert_error_envelope, bearer
from usage_support import USAGE_FIELDS, Account, get_usage, new_account, usage_data

MODEL = "gpt-4o-mini"
SERVED = "smollm2-135m-instruct"
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: every reply is max_tokens


def sdk_for(server: RunningServer, account: Account) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0, timeout=120)


def chat(sdk: OpenAI, metadata: dict[str, str] | None = None, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 2,
        "logit_bias": NO_END,
        **extra,
    }
    if metadata is not None:
        params["metadata"] = metadata
    return sdk.chat.completions.create(**params)


def test_grouping_by_a_metadata_key_totals_each_value(stored_server):
    account = new_account(stored_server)
    sdk = sdk_for(stored_server, account)
    replies = [chat(sdk, {"feature": "auto_reply"}) for _ in range(2)]
    summary = chat(sdk, {"feature": "summary", "lang": "fr"})
    untagged = chat(sdk)

    rows = usage_data(stored_server, account.key, group_by="metadata.feature")

    for row in rows:
        assert set(row) == USAGE_FIELDS | {"metadata.feature"}, row
    by_feature = {row["metadata.feature"]: row for row in rows}
    assert set(by_feature) == {"auto_reply", "summary", None}

    def totals(*completions: Any) -> dict[str, Any]:
        prompt = sum(c.usage.prompt_tokens for c in completions)
        output = sum(c.usage.completion_tokens for c in completions)
        return {
            "requests": len(completions),
            "input_tokens": prompt,
            "output_tokens": output,
            "total_tokens": prompt + output,
            "cost_usd": 0.0,  # the local model is not priced on this server
            "errors": 0,
        }

    assert by_feature["auto_reply"] == {"metadata.feature": "auto_reply", **totals(*replies)}
    assert by_feature["summary"] == {"metadata.feature": "summary", **totals(summary)}
    assert by_feature[None] == {"metadata.feature": None, **totals(untagged)}


def test_no_grouping_is_one_row_of_totals_and_nothing_is_an_empty_list(stored_server):
    account = new_account(stored_server)
    assert usage_data(stored_server, account.key) == []
    assert usage_data(stored_server, account.key, group_by="model") == []
    completion = chat(sdk_for(stored_server, account))
    [row] = usage_data(stored_server, account.key)
    assert set(row) == USAGE_FIELDS
    assert row["requests"] == 1
    assert row["input_tokens"] == completion.usage.prompt_tokens
    assert row["output_tokens"] == completion.usage.completion_tokens == 2


def test_several_groupings_repeated_or_comma_separated(stored_server):
    account = new_account(stored_server)
    sdk = sdk_for(stored_server, account)
    chat(sdk)
    chat(sdk, max_tokens=3)
    with pytest.raises(openai.NotFoundError):
        chat(sdk, model="no-such-model")

    expected = [
        {"model": None, "key": account.key_id, "user": account.user_id},
        {"model": SERVED, "key": account.key_id, "user": account.user_id},
    ]
    repeated = usage_data(stored_server, account.key, group_by=["model", "key", "user"])
    commas = usage_data(stored_server, account.key, group_by="model,key, user")
    assert commas == repeated
    # Grouped fields come first, in the order asked; a refused request has no served model.
    ordered = sorted(repeated, key=lambda row: row["model"] or "")
    assert [{name: row[name] for name in ("model", "key", "user")} for row in ordered] == expected
    assert [list(row)[:3] for row in ordered] == [["model", "key", "user"]] * 2
    refused, served = ordered
    assert (refused["requests"], refused["errors"], refused["output_tokens"]) == (1, 1, 0)
    assert (served["requests"], served["errors"], served["output_tokens"]) == (2, 0, 5)


def test_grouping_by_day_gives_the_utc_date(stored_server):
    account = new_account(stored_server)
    before = time.strftime("%Y-%m-%d", time.gmtime())
    chat(sdk_for(stored_server, account))
    after = time.strftime("%Y-%m-%d", time.gmtime())
    [row] = usage_data(stored_server, account.key, group_by="day")
    assert row["day"] in {before, after}
    assert row["requests"] == 1


def test_since_and_until_bound_the_window(stored_server):
    account = new_account(stored_server)
    started = time.time()
    chat(sdk_for(stored_server, account))

    def requests(**window: Any) -> int:
        rows = usage_data(stored_server, account.key, **window)
        return rows[0]["requests"] if rows else 0

    assert requests(since=str(int(started) - 1)) == 1
    assert requests(since="1h") == 1
    assert requests(since="30m", until="2999-01-01") == 1
    assert requests(since="2999-01-01T00:00:00Z") == 0
    assert requests(until=str(int(started) - 60)) == 0
    assert requests(until="1970-01-02") == 0


def test_a_user_sees_only_their_own_usage_and_an_admin_anyones(stored_server):
    alice = new_account(stored_server, "alice")
    bob = new_account(stored_server, "bob")
    chat(sdk_for(stored_server, alice), {"feature": "summary"})

    assert usage_data(stored_server, bob.key) == []
    assert usage_data(stored_server, bob.key, group_by="user") == []
    # Naming another user does not widen what a user sees.
    assert usage_data(stored_server, bob.key, user=alice.user_id) == []
    assert usage_data(stored_server, bob.key, group_by="metadata.feature") == []

    [own] = usage_data(stored_server, alice.key, group_by="user")
    assert own["user"] == alice.user_id and own["requests"] == 1
    # An admin filters by user, or sees everyone's.
    [seen] = usage_data(stored_server, MASTER_KEY, group_by="user", user=alice.user_id)
    assert seen == own
    everyone = usage_data(stored_server, MASTER_KEY, group_by="user")
    assert own in everyone
    assert bob.user_id not in {row["user"] for row in everyone}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "color"}, "group_by"),
        ({"group_by": "model,metadata."}, "group_by"),
        ({"group_by": "metadata." + "k" * 65}, "group_by"),
        ({"group_by": "metadata.café"}, "group_by"),  # SQLite could not group it
        ({"group_by": 'metadata.a"b'}, "group_by"),
        ({"since": "yesterday"}, "since"),
        ({"since": "7 days"}, "since"),
        ({"since": "-5"}, "since"),
        ({"until": "2026-13-01"}, "until"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(stored_server, params, param):
    response = get_usage(stored_server, MASTER_KEY, **params)
    assert_error_envelope(response, 400, param=param)


def test_usage_needs_a_key(stored_server):
    response = httpx.get(f"{stored_server.base_url}/v1/usage", timeout=30)
    assert_error_envelope(response, 401)
    response = httpx.get(
        f"{stored_server.base_url}/v1/usage", headers=bearer("sk-not-a-key"), timeout=30
    )
    assert_error_envelope(response, 401)
