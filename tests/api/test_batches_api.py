"""The Batch API through the official SDK against a running server: a batch validated, run
line by line on the workers and written back in input order, every refusal of its input
reported with its line, its lines priced at the batch discount in the ledger, and the edge
cases peers get wrong (all lines failed, cancel mid-way, expiry, another tenant's ids).

Lines go to a model served by the project's fake upstream (deterministic, and slowed down
with a first-byte delay where a test needs a batch still running).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream, Fault
from batch_support import chat_line, file_lines, submit, wait_for
from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    bearer,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import new_account, table_rows, usage_data

REMOTE = "remote-mini"
PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per 1M tokens
CHAT = "/v1/chat/completions"
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-batches")
    (home / "config.toml").write_text(
        f"""
[[models]]
name = "smollm2-135m-instruct"

[[models]]
name = "{REMOTE}"
provider = "openai"
base_url = "{fake.base_url}"
upstream_model = "gpt-4o-mini"
price_input_per_1m = {PRICE_IN}
price_output_per_1m = {PRICE_OUT}
max_retries = 0
""",
        encoding="utf-8",
    )
    running = start_server(
        home,
        env={
            **NO_DATABASE_URL,
            "AISERVICE_WORKER_POLL_S": "0.1",
            "AISERVICE_LEDGER_FLUSH_S": "0.2",
            "AISERVICE_BUDGET_REFRESH_S": "0.3",
        },
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0)


def lines_of(count: int, prefix: str = "req") -> list[dict]:
    return [chat_line(f"{prefix}-{i}", REMOTE, f"question {i}") for i in range(count)]


def raw(server: RunningServer, method: str, path: str, key: str = MASTER_KEY, **kwargs):
    return httpx.request(
        method, f"{server.base_url}{path}", headers=bearer(key), timeout=30, **kwargs
    )


# --- a batch that runs -------------------------------------------------------------------------


def test_a_batch_runs_every_line_and_writes_the_answers_in_input_order(
    client: OpenAI, server: RunningServer, upstream: FakeUpstream
):
    created = submit(client, lines_of(5), metadata={"feature": "classification"})
    assert created.status == "validating" and created.metadata == {"feature": "classification"}
    batch = wait_for(client, created.id)
    body = raw(server, "GET", f"/v1/batches/{batch.id}").json()
    assert_matches_schema(body, "Batch")
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 5, "failed": 0}
    assert batch.error_file_id is None and batch.errors is None
    assert batch.model == REMOTE and batch.endpoint == CHAT
    assert (
        batch.created_at
        <= batch.in_progress_at
        <= batch.finalizing_at
        <= batch.completed_at
        <= batch.expires_at
    )
    output = file_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(5)]
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"].startswith("req_")
        assert_matches_schema(line["response"]["body"], "CreateChatCompletionResponse")
    prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    completion = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    assert batch.usage is not None
    assert (batch.usage.input_tokens, batch.usage.output_tokens) == (prompt, completion)
    assert batch.usage.total_tokens == prompt + completion
    assert upstream.request_count(CHAT) == 5


def test_each_line_is_one_ledger_row_at_half_the_price(client: OpenAI, server: RunningServer):
    batch = wait_for(client, submit(client, lines_of(3), metadata={"feature": "triage"}).id)
    output = {line["custom_id"]: line for line in file_lines(client, batch.output_file_id)}
    rows = [row for row in table_rows(server) if row["metadata"].get("batch_id") == batch.id]
    assert len(rows) == 3
    for row in rows:
        assert row["route"] == "/v1/batches" and row["background"] is True
        assert row["metadata"]["feature"] == "triage" and row["status_code"] == 200
        full = (row["input_tokens"] * PRICE_IN + row["output_tokens"] * PRICE_OUT) / 1e6
        assert full > 0 and row["cost_usd"] == pytest.approx(full * 0.5)
    request_ids = {line["response"]["request_id"] for line in output.values()}
    assert {row["request_id"] for row in rows} == request_ids
    grouped = usage_data(server, MASTER_KEY, group_by="metadata.batch_id")
    [mine] = [row for row in grouped if row.get("metadata.batch_id") == batch.id]
    assert mine["requests"] == 3
    assert mine["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in rows))


def test_lines_of_every_endpoint_run(client: OpenAI):
    cases = {
        "/v1/responses": {"model": REMOTE, "input": "hello", "max_output_tokens": 16},
        "/v1/embeddings": {"model": "all-minilm-l6-v2", "input": ["a", "b"]},
        "/v1/moderations": {"input": "have a nice day"},
    }
    objects = {"/v1/responses": "response", "/v1/embeddings": "list", "/v1/moderations": None}
    for endpoint, body in cases.items():
        line = {"custom_id": "one", "method": "POST", "url": endpoint, "body": body}
        batch = wait_for(client, submit(client, [line], endpoint=endpoint).id)
        assert batch.status == "completed", (endpoint, batch)
        [answer] = file_lines(client, batch.output_file_id)
        assert answer["response"]["status_code"] == 200, answer
        if objects[endpoint] is not None:
            assert answer["response"]["body"]["object"] == objects[endpoint]
        else:
            assert len(answer["response"]["body"]["results"]) == 1


# --- validation --------------------------------------------------------------------------------


def test_every_bad_line_is_reported_and_nothing_runs(client: OpenAI, upstream: FakeUpstream):
    good = chat_line("ok", REMOTE)
    lines = [
        good,
        "{not json",
        {"method": "POST", "url": CHAT, "body": good["body"]},
        {**good},  # the custom_id "ok" again
        {**good, "custom_id": "wrong-url", "url": "/v1/embeddings"},
        {**good, "custom_id": "no-messages", "body": {"model": REMOTE}},
        chat_line("unknown-model", "no-such-model"),
        chat_line("streamed", REMOTE, stream=True),
        "",
        {**good, "custom_id": "get", "method": "GET"},
    ]
    batch = wait_for(client, submit(client, lines).id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors is not None
    found = [(error.line, error.code) for error in batch.errors.data]
    assert found == [
        (2, "invalid_json_line"),
        (3, "missing_custom_id"),
        (4, "duplicate_custom_id"),
        (5, "mismatched_endpoint"),
        (6, "invalid_request"),
        (7, "model_not_found"),
        (8, "invalid_request"),
        (10, "invalid_method"),
    ], found
    assert all(error.message for error in batch.errors.data)
    assert batch.errors.data[4].param == "body.messages"
    assert upstream.request_count(CHAT) == 0


def test_an_empty_input_fails(client: OpenAI):
    batch = wait_for(client, submit(client, ["", "  "]).id)
    assert batch.status == "failed" and batch.errors is not None
    assert [error.code for error in batch.errors.data] == ["empty_file"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"endpoint": "/v1/completions"}, 400, "endpoint"),
        ({"endpoint": "/v1/images/generations"}, 400, "endpoint"),
        ({"completion_window": "1d"}, 400, "completion_window"),
        ({"completion_window": "999h"}, 400, "completion_window"),
        ({"input_file_id": "file-nope"}, 404, "id"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata"),
        ({"output_expires_after": {"anchor": "created_at", "seconds": 60}}, 400, None),
        ({"surprise": 1}, 400, "surprise"),
    ],
)
def test_a_batch_the_api_cannot_take_is_refused_at_once(
    client: OpenAI, server: RunningServer, body: dict, status: int, param: str | None
):
    source = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    request = {
        "input_file_id": source.id,
        "endpoint": CHAT,
        "completion_window": "24h",
        **body,
    }
    response = raw(server, "POST", "/v1/batches", json=request)
    if param is None:
        assert_error_envelope(response, status)
    else:
        assert_error_envelope(response, status, param=param)


def test_a_user_data_file_is_not_a_batch_input(client: OpenAI, server: RunningServer):
    source = client.files.create(file=("notes.txt", b"notes\n"), purpose="user_data")
    response = raw(
        server,
        "POST",
        "/v1/batches",
        json={"input_file_id": source.id, "endpoint": CHAT, "completion_window": "24h"},
    )
    assert_error_envelope(response, 400, param="input_file_id")


# --- edge cases --------------------------------------------------------------------------------


def test_an_all_failed_batch_has_an_error_file_and_no_output_file(
    client: OpenAI, server: RunningServer, upstream: FakeUpstream
):
    upstream.add_fault(Fault(path=CHAT, status=400, message="nope", times=None))
    batch = wait_for(client, submit(client, lines_of(3)).id)
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 3}
    assert batch.output_file_id is None and batch.error_file_id is not None
    again = raw(server, "GET", f"/v1/batches/{batch.id}")
    assert again.status_code == 200
    assert_matches_schema(again.json(), "Batch")
    errors = file_lines(client, batch.error_file_id)
    assert sorted(line["custom_id"] for line in errors) == [f"req-{i}" for i in range(3)]
    for line in errors:
        assert line["response"]["status_code"] == 400
        assert set(line["response"]["body"]["error"]) == {"message", "type", "param", "code"}


def test_a_partly_failed_batch_splits_its_lines_between_the_two_files(
    client: OpenAI, upstream: FakeUpstream
):
    upstream.add_fault(Fault(path=CHAT, status=400, times=2))
    batch = wait_for(client, submit(client, lines_of(6)).id)
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 4, "failed": 2}
    output = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(6))  # each exactly once
    assert [line["custom_id"] for line in output] == sorted(
        (line["custom_id"] for line in output), key=lambda c: int(c.split("-")[1])
    )


def test_a_cancelled_batch_keeps_the_lines_already_done(
    client: OpenAI, server: RunningServer, upstream: FakeUpstream
):
    upstream.add_fault(Fault(path=CHAT, first_byte_delay_s=0.3, times=None))
    created = submit(client, lines_of(12))
    wait_until(
        lambda: client.batches.retrieve(created.id).request_counts.completed >= 2,
        timeout=60,
        what="two lines done",
    )
    answer = raw(server, "POST", f"/v1/batches/{created.id}/cancel")
    assert answer.status_code == 200, answer.text
    assert_matches_schema(answer.json(), "Batch")
    cancelling = client.batches.retrieve(created.id)
    assert cancelling.status in {"cancelling", "cancelled"} and cancelling.cancelling_at
    batch = wait_for(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    output = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    assert 2 <= len(output) < 12
    assert len(output) + len(errors) == 12
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert batch.request_counts.completed == len(output)
    settled = upstream.request_count(CHAT)
    assert client.batches.retrieve(created.id).status == "cancelled"
    assert upstream.request_count(CHAT) == settled  # nothing runs after the end


def test_a_finished_batch_cannot_be_cancelled(client: OpenAI, server: RunningServer):
    batch = wait_for(client, submit(client, lines_of(1)).id)
    response = raw(server, "POST", f"/v1/batches/{batch.id}/cancel")
    assert_error_envelope(response, 400, code="batch_not_cancellable")


def test_a_batch_past_its_window_expires_with_partial_results(
    client: OpenAI, upstream: FakeUpstream
):
    upstream.add_fault(Fault(path=CHAT, first_byte_delay_s=0.5, times=None))
    created = submit(client, lines_of(20), window="3s")
    assert created.expires_at == created.created_at + 3
    batch = wait_for(client, created.id, timeout=60)
    assert batch.status == "expired" and batch.expired_at is not None
    output = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    assert 0 < len(output) < 20 and len(output) + len(errors) == 20
    expired = [line for line in errors if line["response"] is None]
    assert expired and {line["error"]["code"] for line in expired} == {"batch_expired"}


def test_another_tenant_sees_none_of_it(client: OpenAI, server: RunningServer):
    batch = wait_for(client, submit(client, lines_of(1)).id)
    other = new_account(server, "batch-tenant")
    for method, path in (
        ("GET", f"/v1/batches/{batch.id}"),
        ("POST", f"/v1/batches/{batch.id}/cancel"),
        ("GET", f"/v1/files/{batch.output_file_id}"),
        ("GET", f"/v1/files/{batch.output_file_id}/content"),
        ("DELETE", f"/v1/files/{batch.output_file_id}"),
        ("GET", f"/v1/files/{batch.input_file_id}"),
    ):
        assert_error_envelope(raw(server, method, path, other.key), 404)
    theirs = OpenAI(base_url=server.api_url, api_key=other.key, max_retries=0)
    assert [b.id for b in theirs.batches.list()] == []
    with pytest.raises(openai.NotFoundError):
        theirs.batches.create(
            input_file_id=batch.input_file_id, endpoint=CHAT, completion_window="24h"
        )


def test_output_files_are_listed_for_their_owner(client: OpenAI):
    batch = wait_for(client, submit(client, lines_of(1)).id)
    listed = {f.id: f for f in client.files.list(purpose="batch_output")}
    assert batch.output_file_id in listed
    assert listed[batch.output_file_id].filename == f"{batch.id}_output.jsonl"


def test_output_expires_after_sets_the_expiry_of_the_output_file(client: OpenAI):
    created = submit(
        client, lines_of(1), output_expires_after={"anchor": "created_at", "seconds": 7200}
    )
    batch = wait_for(client, created.id)
    output = client.files.retrieve(batch.output_file_id)
    assert output.expires_at == output.created_at + 7200


def test_batches_are_listed_newest_first_a_page_at_a_time(client: OpenAI, server: RunningServer):
    account = new_account(server, "batch-list")
    mine = OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0)
    ids = [submit(mine, lines_of(1)).id for _ in range(3)]
    body = raw(server, "GET", "/v1/batches", account.key, params={"limit": 2}).json()
    assert_matches_schema(body, "ListBatchesResponse")
    assert [b["id"] for b in body["data"]] == ids[::-1][:2] and body["has_more"] is True
    rest = mine.batches.list(limit=2, after=body["last_id"])
    assert [b.id for b in rest.data] == ids[:1] and rest.has_more is False
    assert_error_envelope(
        raw(server, "GET", "/v1/batches", account.key, params={"after": "batch_nope"}), 400
    )


def test_a_line_past_a_hard_budget_ends_budget_exceeded_and_costs_nothing(
    client: OpenAI, server: RunningServer
):
    account = new_account(server, "batch-budget")
    spender = OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0)
    spender.chat.completions.create(model=REMOTE, messages=[{"role": "user", "content": "hi"}])
    budget = raw(
        server,
        "POST",
        "/v1/admin/budgets",
        json={"user": account.email, "amount_usd": 1e-9, "period": "total"},
    )
    assert budget.status_code == 201, budget.text
    wait_until(
        lambda: (
            raw(
                server,
                "POST",
                "/v1/chat/completions",
                account.key,
                json={"model": REMOTE, "messages": [{"role": "user", "content": "hi"}]},
            ).status_code
            == 429
        ),
        timeout=30,
        what="the budget refusing requests",
    )
    batch = wait_for(spender, submit(spender, lines_of(2)).id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 2, "completed": 0, "failed": 2}
    errors = file_lines(spender, batch.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"budget_exceeded"}
    rows = [row for row in table_rows(server) if row["metadata"].get("batch_id") == batch.id]
    assert len(rows) == 2 and all(row["cost_usd"] == 0 for row in rows)
    assert {row["status_code"] for row in rows} == {429}


def test_a_batch_leaves_part_of_its_key_s_rate_limit_to_interactive_requests(
    client: OpenAI, server: RunningServer
):
    account = new_account(server, "batch-limits")
    limited = raw(server, "PUT", f"/v1/admin/keys/{account.key_id}/rate_limits", json={"rpm": 10})
    assert limited.status_code == 200, limited.text
    mine = OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0)
    created = submit(mine, lines_of(10))
    # batch_share 0.8: 8 of the 10 requests a minute, then the lines wait.
    wait_until(
        lambda: mine.batches.retrieve(created.id).request_counts.completed == 8,
        timeout=60,
        what="the batch's share of the limit used",
    )
    question = {"model": REMOTE, "messages": [{"role": "user", "content": "now"}]}
    statuses = [
        raw(server, "POST", "/v1/chat/completions", account.key, json=question).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]  # the 2 left were the interactive requests'
    assert mine.batches.retrieve(created.id).request_counts.completed == 8
    mine.batches.cancel(created.id)
    batch = wait_for(mine, created.id)
    assert batch.status == "cancelled" and batch.request_counts.completed == 8
    rows = [row for row in table_rows(server) if row["metadata"].get("batch_id") == batch.id]
    assert len(rows) == 8 and {row["priority"] for row in rows} == {"low"}
