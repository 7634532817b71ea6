"""POST /v1/embeddings on the bundled all-MiniLM-L6-v2, through the official SDK against a real
server: floats and base64, batches, token ids, OpenAI's model names, the refusals, the spec's
schema, and the usage ledger.

The expected vectors are sentence-transformers' own (tests/providers/minilm_reference.json).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from tokenizers import Tokenizer

from aiservice.providers.sentence_encoder import bundled_model_dir
from support import ROOT, assert_error_envelope, assert_matches_schema
from usage_support import flushed_records_of, new_account, usage_data

LOCAL = "all-minilm-l6-v2"
OPENAI_NAMES = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
REFERENCE = json.loads((ROOT / "tests/providers/minilm_reference.json").read_text("utf-8"))
SENTENCES: list[str] = REFERENCE["sentences"]
# What the model reads of each: its tokens up to the 256-token window, [CLS] and [SEP] aside.
READ_TOKENS = sum(min(n, 256) - 2 for n in REFERENCE["untruncated_token_counts"])


def cosine(a: object, b: object) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def token_ids(text: str) -> list[int]:
    """The text's ids in the model's own vocabulary, without [CLS] and [SEP]."""
    tokenizer = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads everything to 128 tokens
    return tokenizer.encode(text, add_special_tokens=False).ids


def vectors_of(client: OpenAI, inputs: object, model: str = LOCAL) -> np.ndarray:
    answer = client.embeddings.create(model=model, input=inputs, encoding_format="float")
    return np.array([entry.embedding for entry in answer.data], dtype=np.float32)


def test_float_vectors_are_sentence_transformers_own(client):
    raw = client.embeddings.with_raw_response.create(
        model=LOCAL, input=SENTENCES, encoding_format="float"
    )
    body = raw.http_response.json()
    assert_matches_schema(body, "CreateEmbeddingResponse")
    answer = raw.parse()
    assert answer.model == LOCAL and answer.object == "list"
    assert [entry.index for entry in answer.data] == list(range(len(SENTENCES)))
    for text, entry, expected in zip(SENTENCES, answer.data, REFERENCE["embeddings"], strict=True):
        assert len(entry.embedding) == 384
        assert cosine(entry.embedding, expected) > 0.9999, text
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == READ_TOKENS


def test_the_sdk_asks_for_base64_by_default_and_decodes_the_same_vectors(client):
    raw = client.embeddings.with_raw_response.create(model=LOCAL, input=SENTENCES[:2])
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64"  # the SDK's own choice
    assert all(isinstance(e["embedding"], str) for e in raw.http_response.json()["data"])
    decoded = np.array([entry.embedding for entry in raw.parse().data], dtype=np.float32)
    assert np.array_equal(decoded, vectors_of(client, SENTENCES[:2]))


def test_base64_is_the_little_endian_float32_bytes_of_the_floats(http, client):
    response = http.post(
        "/v1/embeddings",
        json={"model": LOCAL, "input": SENTENCES[:3], "encoding_format": "base64"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    rows = [np.frombuffer(base64.b64decode(e["embedding"]), dtype="<f4") for e in body["data"]]
    assert np.array_equal(np.stack(rows), vectors_of(client, SENTENCES[:3]))
    as_floats = {
        **body,
        "data": [{**e, "embedding": r.tolist()} for e, r in zip(body["data"], rows, strict=True)],
    }
    assert_matches_schema(as_floats, "CreateEmbeddingResponse")


def test_a_batch_answers_each_input_in_order_as_it_would_alone(client):
    texts = ["Thanks for the invoice.", "Can we talk tomorrow?", "Je suis absent cette semaine."]
    batch = vectors_of(client, texts)
    for text, row in zip(texts, batch, strict=True):
        assert np.abs(vectors_of(client, text)[0] - row).max() < 1e-5


def test_token_ids_of_the_models_vocabulary_embed_as_their_text(client):
    texts = SENTENCES[:2]
    ids = [token_ids(text) for text in texts]
    from_text = vectors_of(client, texts)
    one = client.embeddings.create(model=LOCAL, input=ids[0], encoding_format="float")
    assert cosine(one.data[0].embedding, from_text[0]) > 0.99999
    assert one.usage.prompt_tokens == len(ids[0])
    several = vectors_of(client, ids)
    assert np.abs(several - from_text).max() < 1e-5


def test_a_text_longer_than_the_window_is_truncated_not_refused(client):
    answer = client.embeddings.create(model=LOCAL, input="word " * 2000)
    assert len(answer.data) == 1
    assert answer.usage.prompt_tokens == 254  # 256, [CLS] and [SEP] aside


@pytest.mark.parametrize("name", OPENAI_NAMES)
def test_openai_embedding_names_answer_with_the_local_model(client, name):
    answer = client.embeddings.create(model=name, input="hello", encoding_format="float")
    assert answer.model == LOCAL  # the model that really answered
    assert np.array_equal(np.float32(answer.data[0].embedding), vectors_of(client, "hello")[0])
    assert client.models.retrieve(name).id == name


def test_models_list_the_embedding_model_and_its_aliases(client):
    ids = {model.id for model in client.models.list()}
    assert {LOCAL, *OPENAI_NAMES} <= ids
    assert "minilm" in LOCAL
    assert_matches_schema(
        client.models.with_raw_response.retrieve(LOCAL).http_response.json(), "Model"
    )


@pytest.mark.parametrize("value", ["", [], ["a", ""], [[1, 2], []], [1, "a"], 7])
def test_an_empty_or_mixed_input_is_a_400_naming_input(http, value):
    response = http.post("/v1/embeddings", json={"model": LOCAL, "input": value})
    assert_error_envelope(response, 400, param="input")


def test_more_than_2048_inputs_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=LOCAL, input=["hi"] * 2049)
    assert (refused.value.param, refused.value.code) == ("input", "array_above_max_length")


def test_2048_inputs_are_served(client):
    answer = client.embeddings.create(model=LOCAL, input=["hi"] * 2048)
    assert len(answer.data) == 2048 and answer.data[-1].index == 2047


def test_other_dimensions_are_a_400_and_384_is_served(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=LOCAL, input="hi", dimensions=256)
    assert refused.value.param == "dimensions"
    assert "384" in refused.value.message
    answer = client.embeddings.create(model=LOCAL, input="hi", dimensions=384)
    assert len(answer.data[0].embedding) == 384


def test_a_token_id_outside_the_vocabulary_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=LOCAL, input=[[101, 2000], [31000]])
    assert refused.value.param == "input"


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="no-such-embedder", input="hi")
    assert missing.value.code == "model_not_found"


def test_a_chat_model_refuses_embeddings_with_a_400(http):
    response = http.post("/v1/embeddings", json={"model": "gpt-4o-mini", "input": "hi"})
    error = assert_error_envelope(response, 400, param="model", code="model_not_supported")
    assert "does not support embeddings" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/completions", {"prompt": "Hi"}),
        ("/v1/responses", {"input": "Hi"}),
    ],
)
def test_the_embedding_model_refuses_to_generate_with_a_400(http, path, body):
    response = http.post(path, json={"model": LOCAL, **body})
    error = assert_error_envelope(response, 400, param="model", code="model_not_supported")
    assert "embedding model" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"encoding_format": "hex"}, "encoding_format"), ({"temperature": 0}, "temperature")],
)
def test_a_bad_or_unknown_parameter_is_a_400_naming_it(http, extra, param):
    response = http.post("/v1/embeddings", json={"model": LOCAL, "input": "hi", **extra})
    assert_error_envelope(response, 400, param=param)


def test_the_server_keeps_answering_while_a_large_request_encodes(server, http):
    def encode() -> int:
        body = {"model": LOCAL, "input": ["word " * 300] * 16}  # 16 full windows: seconds
        return http.post("/v1/embeddings", json=body).status_code

    latencies = []
    with ThreadPoolExecutor(max_workers=1) as pool, httpx.Client(base_url=server.base_url) as probe:
        large = pool.submit(encode)
        while not large.done():
            started = time.perf_counter()
            assert probe.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
        assert large.result() == 200
    assert len(latencies) >= 10  # the encode took long enough to be probed
    assert max(latencies) < 1.0, max(latencies)  # the event loop was never held for long


def test_an_embedding_request_is_metered_like_a_chat_request(server):
    account = new_account(server, "embeddings")
    sdk = OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0, timeout=120)
    request_id = f"req-embed-{uuid.uuid4().hex}"
    answer = sdk.embeddings.create(
        model="text-embedding-3-small",
        input=SENTENCES,
        extra_headers={"x-request-id": request_id},
    )
    [row] = flushed_records_of(server, request_id)
    assert row["route"] == "/v1/embeddings"
    assert (row["owner"], row["key_id"]) == (account.user_id, account.key_id)
    assert (row["model_requested"], row["model_served"], row["provider"]) == (
        "text-embedding-3-small",
        LOCAL,
        "local",
    )
    assert (row["input_tokens"], row["output_tokens"]) == (answer.usage.prompt_tokens, 0)
    assert (row["status_code"], row["error_code"], row["upstream_attempts"]) == (200, None, 0)
    [totals] = usage_data(server, account.key)
    assert (totals["requests"], totals["input_tokens"]) == (1, READ_TOKENS)


def test_a_refused_embedding_request_is_recorded_with_its_error(server, http):
    request_id = f"req-embed-{uuid.uuid4().hex}"
    response = http.post(
        "/v1/embeddings",
        json={"model": "gpt-4o-mini", "input": "hi"},
        headers={"x-request-id": request_id},
    )
    assert response.status_code == 400
    [row] = flushed_records_of(server, request_id)
    assert (row["status_code"], row["error_code"]) == (400, "model_not_supported")
    assert (row["model_requested"], row["input_tokens"], row["cost_usd"]) == ("gpt-4o-mini", 0, 0.0)
