"""What a provider that generates a text completion itself cannot do (the local model, or a
chat upstream standing in for `/v1/completions`): insert text before a suffix, or rank
candidates server-side. An upstream that serves `/v1/completions` decides for itself."""

from __future__ import annotations

from aiservice.errors import InvalidRequest
from aiservice.providers.base import GenerationRequest


def refuse_insertion_and_ranking(request: GenerationRequest, model: str) -> None:
    if request.suffix:
        raise InvalidRequest(
            f"The model `{model}` cannot insert text before a suffix: 'suffix' is not supported.",
            param="suffix",
        )
    if request.best_of is not None and request.best_of > request.n:
        raise InvalidRequest(
            f"The model `{model}` does not rank candidates server-side: 'best_of' may only "
            f"equal 'n' ({request.n}). Ask for n={request.best_of} and choose among them.",
            param="best_of",
        )
