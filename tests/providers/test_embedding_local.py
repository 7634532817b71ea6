"""The numpy all-MiniLM-L6-v2 against sentence-transformers' own vectors, and the local
embedding provider's batching and refusals.

minilm_reference.json holds sentence-transformers' output for five texts (English, French,
and one over the model's 256-token window); its "how" field says how it was produced, outside
this project, with torch.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aiservice.errors import InvalidRequest
from aiservice.providers.embedding import EmbeddingCall
from aiservice.providers.embedding_local import LocalEmbedder, batches_by_length
from aiservice.providers.sentence_encoder import SentenceEncoder, bundled_model_dir
from aiservice.settings import ModelConfig

REFERENCE = json.loads((Path(__file__).parent / "minilm_reference.json").read_text("utf-8"))
SENTENCES: list[str] = REFERENCE["sentences"]
EXPECTED = np.array(REFERENCE["embeddings"], dtype=np.float64)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(bundled_model_dir())


@pytest.fixture(scope="module")
def batch_vectors(encoder) -> np.ndarray:
    """The five texts encoded in one batch (the four short ones padded to 256 tokens)."""
    return encoder.encode(encoder.tokenized(SENTENCES))


@pytest.fixture
async def embedder():
    provider = LocalEmbedder(ModelConfig(name="minilm-under-test", kind="embedding"))
    await provider.start()
    yield provider
    await provider.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_every_vector_matches_sentence_transformers(batch_vectors):
    vectors = batch_vectors
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 384)
    for text, vector, expected in zip(SENTENCES, vectors, EXPECTED, strict=True):
        assert cosine(vector, expected) > 0.9999, text
        # The reference is rounded to 5 decimals: nothing differs by more than that.
        assert np.abs(vector - expected).max() < 2e-5, text


def test_pairwise_similarities_are_the_references(batch_vectors):
    vectors = batch_vectors.astype(np.float64)
    assert np.allclose(vectors @ vectors.T, np.array(REFERENCE["cosines"]), atol=1e-5)


def test_a_text_past_the_window_is_truncated_at_max_seq_length(encoder):
    counts = [len(ids) for ids in encoder.tokenized(SENTENCES)]
    assert encoder.max_tokens == 256
    assert counts == [min(n, 256) for n in REFERENCE["untruncated_token_counts"]]
    assert REFERENCE["untruncated_token_counts"][-1] > 256  # the reference truncated it too


def test_vectors_have_unit_length(batch_vectors):
    norms = np.linalg.norm(batch_vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)


def test_a_text_embeds_the_same_alone_and_padded_in_a_batch(encoder, batch_vectors):
    short = encoder.tokenized(SENTENCES[:4])  # padded from about 20 tokens to 256 in the batch
    for ids, in_batch in zip(short, batch_vectors, strict=False):
        alone = encoder.encode([ids])[0]
        assert np.abs(alone - in_batch).max() < 1e-5


def test_token_ids_without_special_tokens_embed_as_their_text(encoder):
    [with_markers] = encoder.tokenized([SENTENCES[2]])
    assert encoder.wrapped(with_markers[1:-1]) == with_markers
    assert encoder.content_tokens(with_markers) == len(with_markers) - 2


def test_a_paraphrase_is_nearer_than_an_unrelated_text(encoder):
    texts = [
        "The meeting is moved to Thursday afternoon.",
        "We have rescheduled the meeting for Thursday after lunch.",
        "My cat likes to sleep in the sun.",
    ]
    meeting, paraphrase, cat = encoder.encode(encoder.tokenized(texts))
    assert cosine(meeting, paraphrase) > cosine(meeting, cat) + 0.3


def test_a_model_with_modules_it_cannot_run_is_refused(tmp_path):
    directory = tmp_path / "with-dense"
    shutil.copytree(bundled_model_dir(), directory, ignore=shutil.ignore_patterns("*.safetensors"))
    modules = json.loads((directory / "modules.json").read_text("utf-8"))
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (directory / "modules.json").write_text(json.dumps(modules), "utf-8")
    with pytest.raises(ValueError, match="Dense"):
        SentenceEncoder(directory)


def test_batches_take_the_longest_first_and_hold_at_most_the_batch_size():
    assert batches_by_length([3, 9, 1, 7, 5], 2) == [[1, 3], [4, 0], [2]]


async def test_the_provider_answers_in_input_order_across_batches(embedder, encoder):
    texts = [f"Note {i}: " + "word " * (i % 5) for i in range(40)]  # two batches
    answer = await embedder.embed(EmbeddingCall(texts))
    assert answer.vectors.shape == (40, 384)
    for i in (0, 4, 33, 39):  # a text of each length lands in either batch
        alone = encoder.encode(encoder.tokenized([texts[i]]))[0]
        assert np.abs(answer.vectors[i] - alone).max() < 1e-5
    assert answer.prompt_tokens == sum(len(ids) - 2 for ids in encoder.tokenized(texts))


async def test_concurrent_requests_each_get_their_own_vectors(embedder, encoder):
    texts = ["Invoice attached.", "Meeting moved to Monday.", "Merci beaucoup !"]
    calls = [EmbeddingCall([text] * 33) for text in texts]  # two batches each
    answers = await asyncio.gather(*(embedder.embed(call) for call in calls))
    for answer, text in zip(answers, texts, strict=True):
        alone = encoder.encode(encoder.tokenized([text]))[0]
        assert np.abs(answer.vectors - alone).max() < 1e-5


async def test_the_provider_refuses_other_dimensions(embedder):
    with pytest.raises(InvalidRequest) as refused:
        await embedder.embed(EmbeddingCall(["hi"], dimensions=256))
    assert refused.value.param == "dimensions"
    same = await embedder.embed(EmbeddingCall(["hi"], dimensions=384))
    assert same.vectors.shape == (1, 384)


async def test_the_provider_refuses_token_ids_outside_its_vocabulary(embedder):
    with pytest.raises(InvalidRequest) as refused:
        await embedder.embed(EmbeddingCall([[101, 30522]]))
    assert refused.value.param == "input"
    assert "30522" in refused.value.message
