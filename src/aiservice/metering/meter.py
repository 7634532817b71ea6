"""The meter of one model request: what the ledger will record about it.

The HTTP middleware opens one for every request on a model route (a background worker for
every job it runs) and puts it in a context variable; the layers that learn something fill it
in as the request goes: authentication the owner and key, the services the model and metadata,
the generation its tokens, time to first token, served model and upstream attempts, the error
translator the error. Whoever opened it hands it to the ledger once the request has ended.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from aiservice.errors import AIServiceError, as_service_error
from aiservice.providers.base import GenerationEvent, PreparedGeneration, TextDelta, Usage
from aiservice.tokens import estimate_tokens

_current: ContextVar[Meter | None] = ContextVar("usage_meter", default=None)


@dataclass(slots=True)
class Meter:
    route: str
    request_id: str
    background: bool = False
    started_at: float = field(default_factory=time.time)  # unix seconds
    started: float = field(default_factory=time.perf_counter)
    owner: str | None = None
    key_id: str | None = None
    model_requested: str | None = None
    model_served: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int | None = None
    first_token: float | None = None  # perf_counter time of the first generated token
    metadata: dict[str, str] = field(default_factory=dict)
    # The request's `safety_identifier` or `user`: the calling application's end user.
    end_user: str | None = None
    # The caller has zero data retention: its record keeps no metadata and no end user.
    zero_retention: bool = False
    error: AIServiceError | None = None
    attempts: list[Any] = field(default_factory=list)  # providers.upstream.Attempt
    # Set when another party writes this request's record (a background job's worker).
    deferred: bool = False
    # Rate limiting: the request's priority, how long it queued for its turn (if it did), and
    # its admission (its x-ratelimit-* headers; its token charge, settled when it ends).
    priority: str | None = None
    wait_ms: float | None = None
    admission: Any = None  # governance.rate_limits.Admission
    settles_tokens: bool = False  # a token limit applies: settle the charge when it ends
    # The generation was stopped before its end: the client left, or a job was cancelled.
    interrupted: bool = False
    # A line of a batch: priced at the batch discount.
    batch: bool = False

    def requested(
        self, model: str, metadata: dict[str, str] | None, end_user: str | None = None
    ) -> None:
        self.model_requested = model
        self.metadata = dict(metadata or {})
        self.end_user = end_user

    def failed(self, error: BaseException) -> None:
        self.error = as_service_error(error)

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token is None:
            return None
        return (self.first_token - self.started) * 1000


def current_meter() -> Meter | None:
    return _current.get()


def make_current(meter: Meter) -> Token[Meter | None]:
    """Make `meter` the current one for this context (and the tasks it starts)."""
    return _current.set(meter)


def restore(token: Token[Meter | None]) -> None:
    _current.reset(token)


@contextmanager
def metering(meter: Meter) -> Iterator[Meter]:
    """`meter` is the current one for the code (and the tasks it starts) inside."""
    token = make_current(meter)
    try:
        yield meter
    finally:
        restore(token)


def metered(generation: PreparedGeneration) -> PreparedGeneration:
    """`generation`, reporting to the current meter if there is one."""
    meter = _current.get()
    if meter is None:
        return generation
    meter.model_served = generation.model
    meter.input_tokens = generation.prompt_tokens
    return MeteredGeneration(generation, meter)


class MeteredGeneration(PreparedGeneration):
    """Passes events through, noting the first token, the usage, the model that really
    answered (a fallback may take over) and the upstream attempts."""

    def __init__(self, inner: PreparedGeneration, meter: Meter):
        self._inner = inner
        self._meter = meter

    @property
    def model(self) -> str:  # type: ignore[override]
        return self._inner.model

    @property
    def prompt_tokens(self) -> int:  # type: ignore[override]
        return self._inner.prompt_tokens

    @property
    def attempts(self) -> list[Any]:
        return self._inner.attempts

    async def events(self) -> AsyncIterator[GenerationEvent]:
        meter = self._meter
        usage_seen = False
        text_chars = 0  # what was generated, should the usage never come
        try:
            async for event in self._inner.events():
                if isinstance(event, Usage):
                    usage_seen = True
                    meter.input_tokens = event.prompt_tokens
                    meter.output_tokens = event.completion_tokens
                    meter.cached_tokens = event.cached_tokens
                else:
                    if meter.first_token is None:
                        meter.first_token = time.perf_counter()
                    if isinstance(event, TextDelta):
                        text_chars += len(event.text)
                yield event
        except Exception as exc:
            meter.failed(exc)
            raise
        except BaseException:  # cancelled, or the consumer stopped reading: the client left
            meter.interrupted = True
            raise
        finally:
            if not usage_seen:
                # Stopped before the end: providers report usage only then, so what was
                # generated is estimated (else dropping a stream just before its end is free).
                meter.output_tokens = estimate_tokens(text_chars)
            meter.model_served = self._inner.model
            meter.attempts = list(self._inner.attempts)
