"""The endpoints a batch may target: how one line's body is checked, and how it is run.

Each line runs through the very service the endpoint's route calls, as the batch's creator,
so that a line gets what the same request over HTTP would: its model, its content policy,
its stored completion if it asked for one, its usage on the meter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from aiservice.errors import InvalidRequest, validation_error
from aiservice.governance.accounts import Principal
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.embedding_request import EmbeddingRequest
from aiservice.services.embeddings import EmbeddingService
from aiservice.services.moderation_request import ModerationRequest
from aiservice.services.moderations import ModerationService
from aiservice.services.pii_store import redacted_lines
from aiservice.services.response_request import ResponseRequest
from aiservice.services.responses import ResponseService
from aiservice.store.batches import NewLine

Body = dict[str, Any]

ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/moderations", "/v1/embeddings")


@dataclass(frozen=True, slots=True)
class CheckedLine:
    request: BaseModel
    model: str | None  # the model it asks for (None: the endpoint's default)


class BatchEndpoints:
    """Checks and runs batch lines on the services of this process."""

    def __init__(
        self,
        registry: ModelRegistry,
        chat_completions: ChatCompletionService,
        responses: ResponseService,
        moderations: ModerationService,
        embeddings: EmbeddingService,
    ):
        self._registry = registry
        self._chat = chat_completions
        self._responses = responses
        self._moderations = moderations
        self._embeddings = embeddings
        self._runs: dict[str, Callable[[Any, Principal], Awaitable[Body]]] = {
            "/v1/chat/completions": self._run_chat,
            "/v1/responses": self._run_response,
            "/v1/moderations": self._run_moderation,
            "/v1/embeddings": self._run_embeddings,
        }

    def check(self, endpoint: str, body: Any) -> CheckedLine:
        """The line's body as the endpoint's request, or the InvalidRequest its route would
        answer (an unknown model included)."""
        if not isinstance(body, dict):
            raise InvalidRequest("The line's `body` must be a JSON object.", param="body")
        shape = _REQUESTS[endpoint]
        try:
            request = shape.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc.errors()) from None
        if getattr(request, "stream", None):
            raise InvalidRequest("A batch line cannot stream: drop `stream`.", param="stream")
        if getattr(request, "background", None):
            raise InvalidRequest(
                "A batch line cannot run in the background: drop `background`.",
                param="background",
            )
        model = getattr(request, "model", None)
        if endpoint == "/v1/embeddings":
            self._registry.resolve_embedding(model)
        elif endpoint == "/v1/moderations":
            if model:
                self._moderations.check_model(model, "model")
        else:
            self._registry.resolve(model)
        return CheckedLine(request, model)

    def served_by(self, endpoint: str, model: str | None) -> str | None:
        """The configured model that answers `model` on `endpoint` (None: none by name)."""
        if model is None or endpoint == "/v1/moderations":
            return None
        if endpoint == "/v1/embeddings":
            return self._registry.resolve_embedding(model).served_by
        return self._registry.resolve(model).served_by

    def screened(
        self, endpoint: str, principal: Principal, slices: AsyncIterator[list[NewLine]]
    ) -> AsyncIterator[list[NewLine]]:
        """The lines as they may be stored: redacted under the creator's PII policy `redact`
        (their answers then hold the placeholders, as a background response's do)."""
        return redacted_lines(self._responses.guard, principal, endpoint, slices)

    async def run(self, endpoint: str, request: BaseModel, principal: Principal) -> Body:
        """The endpoint's answer to the line, as its route would send it."""
        return await self._runs[endpoint](request, principal)

    async def _run_chat(self, request: ChatCompletionRequest, principal: Principal) -> Body:
        chat = await self._chat.prepare(request, principal.owner, principal)
        completion = await self._chat.complete(chat)
        return completion.model_dump(mode="json", exclude_unset=True)

    async def _run_response(self, request: ResponseRequest, principal: Principal) -> Body:
        prepared = await self._responses.prepare(request, principal.owner, principal)
        return await self._responses.complete(prepared)

    async def _run_moderation(self, request: ModerationRequest, principal: Principal) -> Body:
        return await self._moderations.create(request)

    async def _run_embeddings(self, request: EmbeddingRequest, principal: Principal) -> Body:
        answer = await self._embeddings.create(request)
        return answer.model_dump(mode="json", exclude_unset=True, warnings=False)


_REQUESTS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/responses": ResponseRequest,
    "/v1/moderations": ModerationRequest,
    "/v1/embeddings": EmbeddingRequest,
}
