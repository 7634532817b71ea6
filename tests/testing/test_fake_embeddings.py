"""The fake upstream's POST /v1/embeddings, through the official SDK: a fixed vector per input,
as floats or base64, and OpenAI's 400 for an input it would refuse."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream
from aiservice.testing.embedding_replies import fake_embedding
from support import assert_matches_schema


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def sdk(fake: FakeUpstream) -> OpenAI:
    return OpenAI(base_url=fake.base_url, api_key="sk-anything", max_retries=0)


def test_each_input_gets_its_fixed_vector_as_floats(sdk):
    raw = sdk.embeddings.with_raw_response.create(
        model="any-embedder", input=["a b", "c"], encoding_format="float", dimensions=4
    )
    assert_matches_schema(raw.http_response.json(), "CreateEmbeddingResponse")
    answer = raw.parse()
    assert [e.embedding for e in answer.data] == [fake_embedding("a b", 4), fake_embedding("c", 4)]
    assert answer.usage.prompt_tokens == 3 and answer.model == "any-embedder"


def test_base64_decodes_to_the_same_vectors(sdk):
    answer = sdk.embeddings.create(model="any-embedder", input=[[1, 2, 3]])  # SDK: base64
    assert answer.data[0].embedding == fake_embedding([1, 2, 3])


def test_an_empty_input_is_refused_naming_input(sdk, fake):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="any-embedder", input=[])
    assert refused.value.param == "input"
    assert fake.request_count("/embeddings") >= 3
