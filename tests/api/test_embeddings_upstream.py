"""POST /v1/embeddings on upstream embedding models (`kind = "embedding"`), behind the project's
fake upstream over real HTTP: what the upstream receives, the answer relayed in the client's
encoding, retries, a down upstream, and the usage ledger.

The fake answers each input with a fixed vector made from the input (`fake_embedding`) and
counts tokens in words (docs/testing.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream, Fault
from aiservice.testing.embedding_replies import fake_embedding
from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    start_server,
    stop_server,
)
from usage_support import flushed_records_of

REMOTE = "text-embedding-3-small"  # configured: the upstream answers it, not the alias
UPSTREAM_NAME = "fake-embedder-v1"  # what the upstream calls it
DOWN = "remote-embed-down"
LOCAL = "all-minilm-l6-v2"
EMBEDDINGS = "/v1/embeddings"
PRICE = 0.5  # USD per 1M input tokens
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def down_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.add_fault(Fault(path=EMBEDDINGS, status=503, times=None))
        yield fake


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    running_upstream.reset()
    yield running_upstream
    running_upstream.reset()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    running_upstream: FakeUpstream,
    down_upstream: FakeUpstream,
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-embeddings-upstream")
    (home / "config.toml").write_text(
        f"""
[[models]]
name = "smollm2-135m-instruct"

[[models]]
name = "{REMOTE}"
provider = "openai"
kind = "embedding"
base_url = "{running_upstream.base_url}"
upstream_model = "{UPSTREAM_NAME}"
price_input_per_1m = {PRICE}

[[models]]
name = "{DOWN}"
provider = "openai"
kind = "embedding"
base_url = "{down_upstream.base_url}"
max_retries = 1
breaker_failures = 1000
""",
        encoding="utf-8",
    )
    server = start_server(home, env=NO_DATABASE_URL)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> OpenAI:
    return OpenAI(base_url=gateway.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


def received(upstream: FakeUpstream) -> list[dict]:
    return [r.json for r in upstream.requests if r.path == EMBEDDINGS]


def test_the_upstream_gets_the_inputs_under_its_own_name_and_the_answer_is_relayed(sdk, upstream):
    texts = ["Please find the contract attached.", "Rendez-vous lundi."]
    raw = sdk.embeddings.with_raw_response.create(model=REMOTE, input=texts, dimensions=16)
    [sent] = received(upstream)
    assert sent == {
        "model": UPSTREAM_NAME,
        "input": texts,
        "encoding_format": "float",  # asked as floats, whatever the client asked
        "dimensions": 16,
    }
    assert_matches_schema(sent, "CreateEmbeddingRequest")
    assert json.loads(raw.http_request.content)["encoding_format"] == "base64"  # the SDK's
    answer = raw.parse()  # the SDK decoded our base64
    assert answer.model == REMOTE
    assert [entry.embedding for entry in answer.data] == [fake_embedding(t, 16) for t in texts]
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 7  # the fake's words


def test_floats_are_relayed_as_floats_matching_the_spec(sdk, upstream):
    raw = sdk.embeddings.with_raw_response.create(
        model=REMOTE, input="one text", encoding_format="float"
    )
    body = raw.http_response.json()
    assert_matches_schema(body, "CreateEmbeddingResponse")
    assert body["data"][0]["embedding"] == fake_embedding("one text")
    assert "dimensions" not in received(upstream)[0]  # only sent when the client set it


def test_token_id_inputs_are_forwarded_as_they_were_sent(sdk, upstream):
    ids = [[9906, 1917], [15339]]  # the upstream's vocabulary, not ours: not checked here
    answer = sdk.embeddings.create(model=REMOTE, input=ids, encoding_format="float")
    assert received(upstream)[0]["input"] == ids
    assert [entry.embedding for entry in answer.data] == [fake_embedding(i) for i in ids]
    assert answer.usage.prompt_tokens == 3


def test_the_other_openai_names_still_answer_with_the_local_model(sdk, upstream):
    answer = sdk.embeddings.create(model="text-embedding-3-large", input="hi")
    assert answer.model == LOCAL and len(answer.data[0].embedding) == 384
    assert received(upstream) == []
    names = [model.id for model in sdk.models.list()]
    assert names.count(REMOTE) == 1 and DOWN in names and LOCAL in names


def test_a_transient_upstream_failure_is_retried(sdk, upstream, gateway):
    upstream.add_fault(Fault(path=EMBEDDINGS, status=503, times=1))
    request_id = f"req-embed-{uuid.uuid4().hex}"
    answer = sdk.embeddings.create(
        model=REMOTE, input="retry me", extra_headers={"x-request-id": request_id}
    )
    assert answer.data[0].embedding == fake_embedding("retry me")
    assert len(received(upstream)) == 2
    [row] = flushed_records_of(gateway, request_id)
    assert (row["status_code"], row["upstream_attempts"]) == (200, 2)


def test_an_upstream_refusal_of_the_request_comes_back_as_a_400(gateway, upstream):
    upstream.add_fault(Fault(path=EMBEDDINGS, status=400, message="dimensions too large", times=1))
    response = httpx.post(
        f"{gateway.api_url}/embeddings",
        json={"model": REMOTE, "input": "x", "dimensions": 99999},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    error = assert_error_envelope(response, 400)
    assert error["message"] == "dimensions too large"
    assert len(received(upstream)) == 1  # never retried


def test_an_upstream_that_is_down_is_a_503_recorded_with_its_attempts(sdk, gateway):
    request_id = f"req-embed-{uuid.uuid4().hex}"
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.embeddings.create(model=DOWN, input="hi", extra_headers={"x-request-id": request_id})
    assert raised.value.status_code == 503
    [row] = flushed_records_of(gateway, request_id)
    assert (row["status_code"], row["error_code"]) == (503, "upstream_unavailable")
    assert (row["model_served"], row["provider"], row["upstream_attempts"]) == (DOWN, "openai", 2)
    assert (row["input_tokens"], row["cost_usd"]) == (0, 0.0)


def test_an_upstream_embedding_request_is_priced_from_the_configuration(sdk, gateway, upstream):
    request_id = f"req-embed-{uuid.uuid4().hex}"
    answer = sdk.embeddings.create(
        model=REMOTE, input=["four words right here"], extra_headers={"x-request-id": request_id}
    )
    [row] = flushed_records_of(gateway, request_id)
    assert row["route"] == EMBEDDINGS
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        REMOTE,
        REMOTE,
        "openai",
    )
    assert (row["input_tokens"], row["output_tokens"]) == (answer.usage.prompt_tokens, 0) == (4, 0)
    assert row["cost_usd"] == pytest.approx(4 * PRICE / 1e6, rel=1e-12)
    assert row["upstream_attempts"] == 1
