"""Batches of a model configured `batch = "upstream"` go whole to its upstream's Batch API (the
project's fake, over real HTTP): one upload and one upstream batch rather than a request per
line, the answers mapped back line by line with their usage at the batch price, and the
upstream's partial, expired, failed and cancelled batches mapped to ours.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream
from batch_support import chat_line, file_lines, submit, wait_for
from support import MASTER_KEY, RunningServer, start_server, stop_server, wait_until
from usage_support import table_rows

VENDOR = "vendor-mini"  # sends its batches upstream
DIRECT = "direct-mini"  # the same upstream, lines run by aiservice's workers
CHAT = "/v1/chat/completions"
PRICE_IN, PRICE_OUT = 1.0, 2.0
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
    home: Path = tmp_path_factory.mktemp("aiservice-batches-upstream")
    models = "\n".join(
        f"""
[[models]]
name = "{name}"
provider = "openai"
base_url = "{fake.base_url}"
upstream_model = "gpt-4o-mini"
price_input_per_1m = {PRICE_IN}
price_output_per_1m = {PRICE_OUT}
{extra}
"""
        for name, extra in ((VENDOR, 'batch = "upstream"'), (DIRECT, ""))
    )
    (home / "config.toml").write_text(
        f'[[models]]\nname = "smollm2-135m-instruct"\n{models}', encoding="utf-8"
    )
    env = {**NO_DATABASE_URL, "AISERVICE_WORKER_POLL_S": "0.1"}
    running = start_server(home, env={**env, "AISERVICE_UPSTREAM_BATCH_POLL_S": "0.2"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0)


def lines_of(count: int, model: str = VENDOR) -> list[dict]:
    return [chat_line(f"line-{i}", model, f"question {i}") for i in range(count)]


def test_a_batch_goes_upstream_whole_and_comes_back_line_by_line(
    client: OpenAI, server: RunningServer, upstream: FakeUpstream
):
    batch = wait_for(client, submit(client, lines_of(4)).id)
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}
    assert upstream.request_count("/v1/files") == 1 and upstream.request_count(CHAT) == 0
    [sent] = [meta for meta in upstream.app.files.listed() if meta["purpose"] == "batch"]
    stored = upstream.app.files.get(sent["id"])
    assert stored is not None
    uploaded = [json.loads(line) for line in stored.content.splitlines()]
    assert {line["body"]["model"] for line in uploaded} == {"gpt-4o-mini"}
    output = file_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [f"line-{i}" for i in range(4)]
    assert all(line["response"]["status_code"] == 200 for line in output)
    rows = [row for row in table_rows(server) if row["metadata"].get("batch_id") == batch.id]
    assert len(rows) == 4
    for row in rows:
        full = (row["input_tokens"] * PRICE_IN + row["output_tokens"] * PRICE_OUT) / 1e6
        assert row["route"] == "/v1/batches" and row["model_served"] == VENDOR
        assert full > 0 and row["cost_usd"] == pytest.approx(full / 2)
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(row["input_tokens"] for row in rows)


def test_an_upstream_partial_batch_splits_the_lines(client: OpenAI, upstream: FakeUpstream):
    created = submit(client, lines_of(4), metadata={"fake_scenario": "partial"})
    batch = wait_for(client, created.id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    errors = file_lines(client, batch.error_file_id)
    assert sorted(line["custom_id"] for line in errors) == ["line-1", "line-3"]
    assert {line["response"]["status_code"] for line in errors} == {400}


def test_an_expired_upstream_batch_expires_here_with_its_partial_results(client: OpenAI):
    batch = wait_for(client, submit(client, lines_of(4), metadata={"fake_scenario": "expired"}).id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert len(file_lines(client, batch.output_file_id)) == 2
    errors = file_lines(client, batch.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}


def test_a_failed_upstream_batch_fails_here_with_its_errors(client: OpenAI):
    batch = wait_for(client, submit(client, lines_of(2), metadata={"fake_scenario": "failed"}).id)
    assert batch.status == "failed" and batch.errors is not None
    assert batch.errors.data[0].code == "invalid_request"
    assert batch.output_file_id is None and batch.error_file_id is None


def test_a_cancel_reaches_the_upstream_batch(client: OpenAI, upstream: FakeUpstream):
    metadata = {"fake_scenario": "slow", "fake_latency_s": "60"}
    created = submit(client, lines_of(4), metadata=metadata)
    wait_until(
        lambda: (
            client.batches.retrieve(created.id).status == "in_progress"
            and upstream.request_count("/v1/batches") >= 1
        ),
        timeout=30,
        what="the batch sent upstream",
    )
    client.batches.cancel(created.id)
    batch = wait_for(client, created.id)
    assert batch.status == "cancelled"
    cancels = [r for r in upstream.requests if r.path.endswith("/cancel")]
    assert len(cancels) == 1
    output = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    assert len(output) + len(errors) == 4


def test_an_upstream_model_cannot_share_a_batch_with_another(
    client: OpenAI, upstream: FakeUpstream
):
    lines = [*lines_of(1), chat_line("other", DIRECT)]
    batch = wait_for(client, submit(client, lines).id)
    assert batch.status == "failed" and batch.errors is not None
    assert [error.code for error in batch.errors.data] == ["mismatched_model"]
    assert upstream.request_count("/v1/files") == 0


def test_a_model_without_batch_upstream_runs_its_lines_on_the_workers(
    client: OpenAI, upstream: FakeUpstream
):
    batch = wait_for(client, submit(client, lines_of(3, DIRECT)).id)
    assert batch.status == "completed"
    assert upstream.request_count(CHAT) == 3 and upstream.request_count("/v1/files") == 0
