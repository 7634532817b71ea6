"""Fallbacks: when a model's upstream is unavailable (its retries exhausted or its circuit
open), the next model of its `fallbacks` answers instead — as long as nothing has reached
the client yet."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from aiservice.errors import UpstreamUnavailable
from aiservice.providers.base import (
    ChatProvider,
    GenerationEvent,
    GenerationRequest,
    PreparedGeneration,
)

log = logging.getLogger(__name__)


class FallbackProvider(ChatProvider):
    """A model's provider followed by its fallbacks, each as (served model name, provider)."""

    def __init__(
        self,
        primary: ChatProvider,
        fallbacks: Callable[[], list[tuple[str, ChatProvider]]],
    ):
        self._primary = primary
        self._fallbacks = fallbacks  # resolved late: fallbacks may be declared after the model

    @property
    def ready(self) -> bool:
        return self._primary.ready

    async def prepare_chat(self, request: GenerationRequest) -> PreparedGeneration:
        return FallbackGeneration(
            await self._primary.prepare_chat(request), request, self._fallbacks()
        )

    async def prepare_text(self, request: GenerationRequest) -> PreparedGeneration:
        return FallbackGeneration(
            await self._primary.prepare_text(request), request, self._fallbacks(), text=True
        )


class FallbackGeneration(PreparedGeneration):
    def __init__(
        self,
        primary: PreparedGeneration,
        request: GenerationRequest,
        fallbacks: list[tuple[str, ChatProvider]],
        *,
        text: bool = False,
    ):
        self._current = primary
        self._request = request
        self._fallbacks = fallbacks
        self._text = text  # a text completion: the fallbacks prepare one too
        self.model = primary.model
        self.prompt_tokens = primary.prompt_tokens
        self._earlier_attempts: list[Any] = []  # of the models given up on

    @property
    def attempts(self) -> list[Any]:  # type: ignore[override]
        return self._earlier_attempts + list(self._current.attempts)

    async def events(self) -> AsyncIterator[GenerationEvent]:
        remaining = list(self._fallbacks)
        while True:
            started = False
            try:
                async for event in self._current.events():
                    started = True
                    yield event
                return
            except UpstreamUnavailable as exc:
                if started or not remaining:
                    raise
                name, provider = remaining.pop(0)
                self._earlier_attempts += self._current.attempts
                log.warning(
                    "falling back",
                    extra={"model": self.model, "fallback": name, "reason": exc.message},
                )
                prepare = provider.prepare_text if self._text else provider.prepare_chat
                self._current = await prepare(replace(self._request, model=name))
                self.model = self._current.model
                self.prompt_tokens = self._current.prompt_tokens
