"""EmbeddingService.embed, the call other services make (the e-mail assistant's): the same
vectors, checks and metering as POST /v1/embeddings, without HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from aiservice.errors import InvalidRequest
from aiservice.metering.meter import Meter, metering
from aiservice.providers.registry import ModelRegistry
from aiservice.services.embedding_request import EmbeddingRequest
from aiservice.services.embeddings import EmbeddingService
from aiservice.settings import ModelConfig, Settings

TEXTS = ["Please confirm the delivery date.", "Merci de confirmer la date de livraison."]


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[EmbeddingService]:
    for name in list(os.environ):
        if name.upper().startswith("AISERVICE_"):
            monkeypatch.delenv(name)
    # An upstream chat model (starting it connects nowhere) and the bundled embedding model.
    chat = ModelConfig(name="chat", provider="openai", base_url="http://127.0.0.1:9/v1")
    registry = ModelRegistry(Settings(home=tmp_path, models=[chat]))
    await registry.start()
    yield EmbeddingService(registry)
    await registry.close()


async def test_embed_returns_one_unit_vector_per_text_in_order(service):
    vectors = await service.embed(TEXTS)
    assert [len(vector) for vector in vectors] == [384, 384]
    assert all(isinstance(value, float) for value in vectors[0])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    [first] = await service.embed(TEXTS[:1])
    assert np.abs(np.array(first) - np.array(vectors[0])).max() < 1e-5


async def test_embed_gives_the_routes_vectors(service):
    answer = await service.create(EmbeddingRequest(model="all-minilm-l6-v2", input=TEXTS))
    route = np.array([entry.embedding for entry in answer.data], dtype=np.float32)
    assert np.array_equal(np.array(await service.embed(TEXTS), dtype=np.float32), route)


async def test_embed_answers_to_openais_names_and_refuses_chat_models(service):
    assert len(await service.embed(TEXTS, model="text-embedding-3-small")) == 2
    with pytest.raises(InvalidRequest) as refused:
        await service.embed(TEXTS, model="chat")
    assert refused.value.param == "model"


async def test_embed_refuses_what_the_route_refuses(service):
    for texts in ([], ["fine", ""]):
        with pytest.raises(InvalidRequest) as refused:
            await service.embed(texts)
        assert refused.value.param == "input"


async def test_embed_reports_to_an_open_meter(service):
    with metering(Meter("/internal/email-assistant", "req-embed-service")) as meter:
        await service.embed(TEXTS, model="text-embedding-3-small")
    assert (meter.model_requested, meter.model_served) == (
        "text-embedding-3-small",
        "all-minilm-l6-v2",
    )
    assert meter.input_tokens > len(TEXTS) and meter.output_tokens == 0
