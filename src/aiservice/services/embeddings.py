"""Create embeddings (`POST /v1/embeddings`, and `embed` for other services): resolve the
embedding model, have its provider embed the inputs, answer OpenAI's `CreateEmbeddingResponse`
with the vectors as floats or as base64. Metered like a chat request: the prompt tokens, the
model that answered, the upstream attempts; nothing is stored."""

from __future__ import annotations

import base64

import numpy as np
from numpy.typing import NDArray
from openai.types import CreateEmbeddingResponse, Embedding
from openai.types.create_embedding_response import Usage

from aiservice.metering.meter import current_meter
from aiservice.providers.embedding import Embeddings
from aiservice.providers.embedding_models import BUNDLED_EMBEDDING_MODEL
from aiservice.providers.registry import ModelRegistry
from aiservice.services.embedding_request import EmbeddingRequest
from aiservice.services.queries import parsed


class EmbeddingService:
    """Embeddings from whichever provider serves the requested embedding model."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    async def create(self, request: EmbeddingRequest) -> CreateEmbeddingResponse:
        """OpenAI's answer to `request`; every refusal is raised (the model, `dimensions`,
        token ids outside the model's vocabulary)."""
        embeddings = await self._embeddings(request)
        as_base64 = request.encoding_format == "base64"
        return CreateEmbeddingResponse(
            data=[_entry(index, row, as_base64) for index, row in enumerate(embeddings.vectors)],
            model=embeddings.model,
            object="list",
            usage=Usage(
                prompt_tokens=embeddings.prompt_tokens, total_tokens=embeddings.prompt_tokens
            ),
        )

    async def embed(
        self, texts: list[str], model: str = BUNDLED_EMBEDDING_MODEL
    ) -> list[list[float]]:
        """The vectors of `texts`, in order, for a caller inside aiservice; the same checks
        and the same metering (when a meter is open) as the route."""
        request = parsed(EmbeddingRequest, {"model": model, "input": texts})
        return (await self._embeddings(request)).vectors.tolist()

    async def _embeddings(self, request: EmbeddingRequest) -> Embeddings:
        meter = current_meter()
        if meter is not None:
            meter.requested(request.model, None)
        served = self._registry.resolve_embedding(request.model)
        call = request.to_call()
        try:
            embeddings = await served.embedder.embed(call)
        finally:
            if meter is not None:
                meter.model_served = served.served_by
                meter.attempts = list(call.attempts)
        if meter is not None:
            meter.input_tokens = embeddings.prompt_tokens
        return embeddings


def _entry(index: int, vector: NDArray[np.float32], as_base64: bool) -> Embedding:
    if not as_base64:
        return Embedding(embedding=vector.tolist(), index=index, object="embedding")
    # What OpenAI sends and its SDK decodes: the float32 values' little-endian bytes. Not
    # validated: the SDK's type says list of floats, the wire says string.
    encoded = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return Embedding.model_construct(embedding=encoded, index=index, object="embedding")
