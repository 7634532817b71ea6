"""What every embedding provider implements: one async `embed` from inputs to vectors.

Kept apart from the chat providers (base.py): an embedding model generates nothing, and no
chat model embeds. Vectors travel as one float32 array, whatever the wire's encoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Texts, or texts already tokenized into ids of the serving model's vocabulary.
EmbeddingInputs = list[str] | list[list[int]]


@dataclass(slots=True)
class EmbeddingCall:
    """Provider-neutral parameters of one embeddings request (OpenAI's semantics)."""

    inputs: EmbeddingInputs
    dimensions: int | None = None
    # Filled in by the provider as it goes, read by the meter even when the call fails.
    attempts: list[Any] = field(default_factory=list)  # providers.upstream.Attempt


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The answer: one float32 row per input, in the inputs' order."""

    model: str  # the model that really answered, as clients should see it
    vectors: NDArray[np.float32]  # (inputs, dimensions)
    prompt_tokens: int


class EmbeddingProvider(ABC):
    """A source of embeddings for one configured model."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """True once requests can be served."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load what the provider needs (called in the app's lifespan)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what start() took."""

    @abstractmethod
    async def embed(self, call: EmbeddingCall) -> Embeddings:
        """Check the call against the model and embed every input; refusals raise."""
