"""The local embedding provider: the bundled all-MiniLM-L6-v2, run on numpy in-process
(sentence_encoder.py).

The model owns one worker thread, so encodes never run on the event loop and never compete
with each other for the machine's cores (numpy's BLAS already uses them all). A request is cut
into batches of similar length, each its own job on that thread: two requests' batches take
turns, so a large request does not hold a small one up for its whole length, and one whose
client left stops at its next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aiservice.errors import InvalidRequest, ServiceUnavailable
from aiservice.providers.embedding import (
    EmbeddingCall,
    EmbeddingInputs,
    EmbeddingProvider,
    Embeddings,
)
from aiservice.providers.sentence_encoder import SentenceEncoder, bundled_model_dir
from aiservice.settings import ModelConfig

log = logging.getLogger(__name__)

# Texts per forward pass: sentence-transformers' default. A batch of 32 full windows (256
# tokens) holds about 100 MB of attention scores at its peak.
BATCH_SIZE = 32


class LocalEmbedder(EmbeddingProvider):
    """The bundled sentence-embedding model, served from this process."""

    def __init__(self, config: ModelConfig):
        self.model_id = config.name
        self._encoder: SentenceEncoder | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"embed-{config.name}"
        )

    @property
    def ready(self) -> bool:
        return self._encoder is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._encoder = await loop.run_in_executor(
            self._executor, SentenceEncoder, bundled_model_dir()
        )
        log.info(
            "local embedding model loaded",
            extra={"model": self.model_id, "dimensions": self._encoder.dimensions},
        )

    async def close(self) -> None:
        self._encoder = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def embed(self, call: EmbeddingCall) -> Embeddings:
        encoder = self._encoder
        if encoder is None:
            raise ServiceUnavailable(f"The model `{self.model_id}` is not loaded.")
        if call.dimensions is not None and call.dimensions != encoder.dimensions:
            raise InvalidRequest(
                f"The model `{self.model_id}` makes {encoder.dimensions}-dimensional embeddings "
                f"and cannot shorten them: leave 'dimensions' out or set it to "
                f"{encoder.dimensions}.",
                param="dimensions",
            )
        loop = asyncio.get_running_loop()
        token_ids = await loop.run_in_executor(
            self._executor, self._token_ids, encoder, call.inputs
        )
        vectors = np.empty((len(token_ids), encoder.dimensions), dtype=np.float32)
        for rows in batches_by_length([len(ids) for ids in token_ids], BATCH_SIZE):
            batch = [token_ids[row] for row in rows]
            vectors[rows] = await loop.run_in_executor(self._executor, encoder.encode, batch)
        read = sum(encoder.content_tokens(ids) for ids in token_ids)
        return Embeddings(self.model_id, vectors, read)

    def _token_ids(self, encoder: SentenceEncoder, inputs: EmbeddingInputs) -> list[list[int]]:
        """Each input as the model reads it; token-id inputs checked against its vocabulary."""
        if inputs and isinstance(inputs[0], str):
            return encoder.tokenized(inputs)  # type: ignore[arg-type]
        wrapped = []
        for ids in inputs:
            assert not isinstance(ids, str)
            if min(ids) < 0 or max(ids) >= encoder.vocab_size:
                bad = next(i for i in ids if not 0 <= i < encoder.vocab_size)
                raise InvalidRequest(
                    f"Invalid token id {bad} in 'input': the model `{self.model_id}` reads ids "
                    f"of its own vocabulary, 0 to {encoder.vocab_size - 1}.",
                    param="input",
                )
            wrapped.append(encoder.wrapped(ids))
        return wrapped


def batches_by_length(lengths: Sequence[int], size: int) -> list[list[int]]:
    """The indices of `lengths` in batches of at most `size`, longest first, so that each
    batch pads its texts to a length close to their own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[start : start + size] for start in range(0, len(order), size)]
