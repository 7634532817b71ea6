"""The fake upstream's Files and Batch APIs, through the official SDK: uploads and their
content, batches moving validating -> in_progress -> their end one retrieve at a time, each
`fake_scenario`, cancelling, and the output and error files they write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import Batch

from aiservice.testing import FakeUpstream, Fault
from aiservice.testing.embedding_replies import fake_embedding
from aiservice.testing.fake_batches import EXPIRED_MESSAGE
from support import assert_error_envelope, assert_matches_schema

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    running_upstream.reset()
    running_upstream.app.files.clear()
    running_upstream.app.batches.clear()
    running_upstream.app.behaviour.batch_latency_s = 0.0
    yield running_upstream


@pytest.fixture
def sdk(upstream: FakeUpstream) -> OpenAI:
    return OpenAI(base_url=upstream.base_url, api_key="sk-anything", max_retries=0)


@pytest.fixture
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=5) as client:
        yield client


def chat_line(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "gpt-4o-mini", "messages": messages, **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def start_batch(
    sdk: OpenAI, lines: list[dict[str, Any]], endpoint: str = CHAT, **metadata: str
) -> Batch:
    uploaded = sdk.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata=metadata or None,
    )


def read_lines(sdk: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def assert_batch_schema(batch: Batch) -> None:
    # The spec's subset types these fields as non-null strings and integers; OpenAI sends
    # null for those not reached yet, as the fake does, so only the others are validated.
    raw = {key: value for key, value in batch.model_dump().items() if value is not None}
    assert_matches_schema(raw, "Batch")


def test_an_upload_is_kept_with_its_file_object_and_raw_content(sdk, http, upstream):
    data = b'{"custom_id": "a"}\n'
    uploaded = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.object == "file"
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (len(data), "in.jsonl", "batch")
    assert uploaded.status == "processed"
    assert uploaded.expires_at == uploaded.created_at + 30 * 24 * 3600  # batch files: 30 days
    assert_matches_schema(http.get(f"/v1/files/{uploaded.id}").json(), "OpenAIFile")
    assert sdk.files.retrieve(uploaded.id) == uploaded
    content = http.get(f"/v1/files/{uploaded.id}/content")
    assert content.content == data
    assert content.headers["content-type"] == "application/octet-stream"
    assert sdk.files.content(uploaded.id).content == data
    listed = http.get("/v1/files").json()
    assert_matches_schema(listed, "ListFilesResponse")
    assert [f["id"] for f in listed["data"]] == [uploaded.id] and listed["has_more"] is False
    deleted = sdk.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    assert [f.id for f in sdk.files.list()] == []
    assert upstream.request_count("/files") == 3  # the upload and two lists


def test_expires_after_sets_the_expiry_and_bad_fields_are_refused(sdk, http):
    kept = sdk.files.create(
        file=("notes.txt", b"hello"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert kept.expires_at == kept.created_at + 3600
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.files.create(file=("notes.txt", b"hello"), purpose="nonsense")  # type: ignore[arg-type]
    assert refused.value.param == "purpose"
    not_multipart = http.post("/v1/files", json={"purpose": "batch"})
    assert_error_envelope(not_multipart, 400)


def test_unknown_file_and_batch_ids_get_a_404_envelope(sdk, http):
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve("file-nope")
    for method, path in [
        ("GET", "/v1/files/file-nope"),
        ("GET", "/v1/files/file-nope/content"),
        ("DELETE", "/v1/files/file-nope"),
        ("GET", "/v1/batches/batch_nope"),
        ("POST", "/v1/batches/batch_nope/cancel"),
    ]:
        assert_error_envelope(http.request(method, path), 404, code=None)
    assert_error_envelope(http.put("/v1/files/file-nope"), 405)
    assert_error_envelope(http.get("/v1/batches/batch_nope/other"), 404, code="unknown_url")


def test_a_batch_answers_each_line_as_its_route_would_in_input_order(sdk, http, upstream):
    lines = [chat_line(f"req-{i}", f"question number {i}") for i in range(3)]
    created = start_batch(sdk, lines)
    assert created.id.startswith("batch_") and created.object == "batch"
    assert (created.status, created.endpoint, created.model) == ("validating", CHAT, "gpt-4o-mini")
    assert created.request_counts.total == 3 and created.output_file_id is None
    assert created.expires_at == created.created_at + 24 * 3600
    first = sdk.batches.retrieve(created.id)
    assert first.status == "in_progress" and first.in_progress_at is not None
    done = sdk.batches.retrieve(created.id)
    assert done.status == "completed" and done.completed_at is not None
    assert_batch_schema(done)
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert done.error_file_id is None
    output = read_lines(sdk, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["req-0", "req-1", "req-2"]
    for index, line in enumerate(output):
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        assert_matches_schema(response["body"], "CreateChatCompletionResponse")
        reply = response["body"]["choices"][0]["message"]["content"]
        assert reply == f"Fake reply to: question number {index}"
    # Usage sums the lines': 3 prompt words and 6 reply words each.
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (9, 18)
    assert done.usage.total_tokens == 27
    assert sdk.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert sdk.batches.retrieve(created.id) == done  # an ended batch stays as it is
    assert [b.id for b in sdk.batches.list()] == [created.id]
    recorded = [r for r in upstream.requests if r.method == "POST"]
    assert [r.path for r in recorded] == ["/v1/files", "/v1/batches"]
    assert recorded[1].json["input_file_id"] == created.input_file_id


def test_embedding_lines_are_answered_and_their_usage_counted(sdk):
    line = {
        "custom_id": "e1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "emb", "input": "two words", "dimensions": 4},
    }
    batch = start_batch(sdk, [line], endpoint="/v1/embeddings")
    sdk.batches.retrieve(batch.id)
    done = sdk.batches.retrieve(batch.id)
    [output] = read_lines(sdk, done.output_file_id)
    assert output["response"]["body"]["data"][0]["embedding"] == fake_embedding("two words", 4)
    assert done.usage is not None and done.usage.input_tokens == 2


def test_batch_latency_keeps_a_batch_in_progress_until_it_has_passed(sdk, upstream):
    upstream.app.behaviour.batch_latency_s = 0.4
    batch = start_batch(sdk, [chat_line("a", "hi")])
    assert sdk.batches.retrieve(batch.id).status == "in_progress"
    assert sdk.batches.retrieve(batch.id).status == "in_progress"
    time.sleep(0.45)
    assert sdk.batches.retrieve(batch.id).status == "completed"


def test_slow_scenario_advances_the_counts_with_time(sdk):
    latency, total = 1.0, 10
    lines = [chat_line(f"s{i}", "hi") for i in range(total)]
    before = time.time()
    batch = start_batch(sdk, lines, fake_scenario="slow", fake_latency_s=str(latency))
    created_by = time.time()
    time.sleep(latency / 2)
    asked = time.time()
    first = sdk.batches.retrieve(batch.id)
    answered = time.time()
    assert first.status == "in_progress" and first.usage is not None
    # The fake's clock started between `before` and `created_by`, and read it between
    # `asked` and `answered`: the share done lies between those bounds.
    low = int(total * (asked - created_by) / latency)
    high = min(int(total * (answered - before) / latency), total)
    assert low <= first.request_counts.completed <= high
    assert first.usage.input_tokens == first.request_counts.completed  # one word a prompt
    time.sleep(max(0.0, before + latency + 0.05 - time.time()))
    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == total
    assert len(read_lines(sdk, done.output_file_id)) == total


def test_partial_scenario_fails_the_lines_whose_id_ends_in_an_odd_digit(sdk):
    lines = [chat_line(f"item-{i}", "hi") for i in range(1, 5)]
    batch = start_batch(sdk, lines, fake_scenario="partial")
    sdk.batches.retrieve(batch.id)
    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed"
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (4, 2, 2)
    output = read_lines(sdk, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["item-2", "item-4"]
    errors = read_lines(sdk, done.error_file_id)
    assert [line["custom_id"] for line in errors] == ["item-1", "item-3"]
    for line in errors:
        assert line["error"] is None and line["response"]["status_code"] == 400
        assert line["response"]["request_id"].startswith("req_")
        error = line["response"]["body"]["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            None,
            None,
        )


def test_an_all_failed_batch_has_only_an_error_file(sdk):
    no_model = {**chat_line("a", "hi"), "body": {"messages": []}}
    batch = start_batch(sdk, [chat_line("x1", "hi"), no_model], fake_scenario="partial")
    sdk.batches.retrieve(batch.id)
    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 2)
    errors = read_lines(sdk, done.error_file_id)
    assert [line["response"]["status_code"] for line in errors] == [400, 400]
    assert errors[1]["response"]["body"]["error"]["param"] == "model"
    assert done.usage is not None and done.usage.total_tokens == 0


def test_expired_scenario_keeps_the_first_half_and_expires_the_rest(sdk):
    lines = [chat_line(f"e{i}", "hi") for i in range(5)]
    batch = start_batch(sdk, lines, fake_scenario="expired")
    assert sdk.batches.retrieve(batch.id).status == "in_progress"
    ended = sdk.batches.retrieve(batch.id)
    assert ended.status == "expired" and ended.expired_at is not None
    assert ended.completed_at is None
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 3)
    assert [line["custom_id"] for line in read_lines(sdk, ended.output_file_id)] == ["e0", "e1"]
    expired = read_lines(sdk, ended.error_file_id)
    assert [line["custom_id"] for line in expired] == ["e2", "e3", "e4"]
    for line in expired:
        assert line["response"] is None
        assert line["error"] == {"code": "batch_expired", "message": EXPIRED_MESSAGE}


def test_failed_scenario_fails_at_validation_without_files(sdk):
    batch = start_batch(sdk, [chat_line("a", "hi")], fake_scenario="failed")
    assert batch.status == "validating"
    failed = sdk.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.in_progress_at is None
    assert (failed.output_file_id, failed.error_file_id) == (None, None)
    assert failed.errors is not None and failed.errors.object == "list"
    [error] = failed.errors.data
    assert (error.code, error.param, error.line) == ("invalid_request", None, 1)
    assert error.message
    assert_batch_schema(failed)


def test_an_invalid_input_file_fails_the_batch_naming_its_lines(sdk):
    wrong_url = {**chat_line("b", "hi"), "url": "/v1/embeddings"}
    batch = start_batch(sdk, [chat_line("a", "hi"), wrong_url, chat_line("a", "again")])
    failed = sdk.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [(e.line, e.param) for e in failed.errors.data] == [(2, "url"), (3, "custom_id")]


def test_cancel_before_completion_ends_cancelled_with_nothing_done(sdk):
    batch = start_batch(sdk, [chat_line("a", "hi"), chat_line("b", "hi")])
    assert sdk.batches.retrieve(batch.id).status == "in_progress"
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    cancelled = sdk.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert (cancelled.output_file_id, cancelled.error_file_id) == (None, None)
    assert cancelled.request_counts.completed == 0 and cancelled.completed_at is None
    assert sdk.batches.cancel(batch.id).status == "cancelled"  # cancelling again changes nothing


def test_cancel_keeps_the_lines_a_slow_batch_has_done(sdk):
    lines = [chat_line(f"c{i}", "hi") for i in range(3)]
    batch = start_batch(sdk, lines, fake_scenario="slow", fake_latency_s="0.3")
    time.sleep(0.35)  # every line done by now, though no retrieve has seen it
    assert sdk.batches.cancel(batch.id).status == "cancelling"
    cancelled = sdk.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.request_counts.completed == 3
    assert [line["custom_id"] for line in read_lines(sdk, cancelled.output_file_id)] == [
        "c0",
        "c1",
        "c2",
    ]


def test_an_ended_batch_cannot_be_cancelled(sdk):
    batch = start_batch(sdk, [chat_line("a", "hi")])
    sdk.batches.retrieve(batch.id)
    sdk.batches.retrieve(batch.id)
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)


def test_bad_batch_requests_are_refused(sdk, http):
    uploaded = sdk.files.create(file=("in.jsonl", jsonl([chat_line("a", "hi")])), purpose="batch")
    good = {"input_file_id": uploaded.id, "endpoint": CHAT, "completion_window": "24h"}
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({**good, "input_file_id": "file-nope"}, 404, "input_file_id"),
        ({**good, "endpoint": "/v1/images/generations"}, 400, "endpoint"),
        ({**good, "completion_window": "1h"}, 400, "completion_window"),
        ({**good, "metadata": {"fake_scenario": "sideways"}}, 400, "metadata"),
        ({**good, "metadata": {"fake_latency_s": "soon"}}, 400, "metadata"),
        ({"endpoint": CHAT, "completion_window": "24h"}, 400, "input_file_id"),
    ]
    for body, status, param in cases:
        assert_error_envelope(http.post("/v1/batches", json=body), status, param=param)
    assert_error_envelope(http.post("/v1/batches", content=b"[1]"), 400)


def test_faults_apply_to_the_file_and_batch_routes(sdk, upstream):
    upstream.add_fault(Fault(path="/files", status=503))
    with pytest.raises(openai.InternalServerError):
        sdk.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    batch = start_batch(sdk, [chat_line("a", "hi")])
    upstream.add_fault(Fault(path=f"/batches/{batch.id}", status=429, retry_after=1))
    with pytest.raises(openai.RateLimitError):
        sdk.batches.retrieve(batch.id)
    assert sdk.batches.retrieve(batch.id).status == "in_progress"  # the 429 did not count
