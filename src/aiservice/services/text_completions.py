"""Create legacy text completions (`POST /v1/completions`): each prompt completed as raw text
by the serving provider, the events assembled into OpenAI's `text_completion` objects.
Nothing is stored: OpenAI keeps no legacy completions either."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.completion_choice import Logprobs

from aiservice.metering.meter import current_meter, metered
from aiservice.providers.base import (
    ChoiceFinished,
    GenerationEvent,
    PreparedGeneration,
    TextDelta,
    TokenLogprob,
    Usage,
)
from aiservice.providers.registry import ModelRegistry
from aiservice.services.text_completion_request import TextCompletionRequest

_FINISH_REASONS = ("stop", "length", "content_filter")


def new_text_completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


@dataclass(slots=True)
class PreparedText:
    """A checked text completion request with its id, ready to run once."""

    id: str
    created: int
    request: TextCompletionRequest
    generation: PreparedGeneration

    def echoed(self, index: int) -> str:
        """What choice `index` starts with: its prompt with `echo`, else nothing."""
        if not self.request.echo:
            return ""
        return self.request.prompts[index // (self.request.n or 1)]


class TextCompletionService:
    """Create text completions on whichever provider serves the requested model."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    async def prepare(self, request: TextCompletionRequest) -> PreparedText:
        """Resolve the model and check every prompt; every refusal is raised here."""
        meter = current_meter()
        if meter is not None:
            meter.requested(request.model, None)
        served = self._registry.resolve(request.model)
        base = request.to_generation(served.served_by)
        generations = [
            await served.provider.prepare_text(replace(base, prompt=prompt))
            for prompt in request.prompts
        ]
        generation = metered(PromptsGeneration(generations, base.n))
        return PreparedText(new_text_completion_id(), int(time.time()), request, generation)

    async def complete(self, text: PreparedText) -> Completion:
        choices: dict[int, _ChoiceAccumulator] = {}
        usage = Usage(text.generation.prompt_tokens, 0)
        async for event in text.generation.events():
            if isinstance(event, Usage):
                usage = event
                continue
            if event.index not in choices:
                choices[event.index] = _ChoiceAccumulator([text.echoed(event.index)])
            choices[event.index].add(event)
        wants_logprobs = text.request.logprobs is not None
        return Completion(
            id=text.id,
            object="text_completion",
            created=text.created,
            model=text.generation.model,
            choices=[choices[i].as_choice(i, wants_logprobs) for i in sorted(choices)],
            usage=_usage(usage),
        )

    async def stream(self, text: PreparedText) -> AsyncIterator[Completion]:
        """A chunk per piece of text of each choice, its first holding the echoed prompt, a
        last chunk per choice with its `finish_reason`; then (with
        `stream_options.include_usage`) one with no choices and the usage. Chunks have the
        shape of the whole object, `finish_reason: null` until the choice's end."""
        options = text.request.stream_options
        include_usage = bool(options and options.include_usage)
        wants_logprobs = text.request.logprobs is not None
        sent: dict[int, int] = {}  # characters of each choice so far: the next text offset
        async for event in text.generation.events():
            if isinstance(event, Usage):
                if include_usage:
                    yield _chunk(text, [], include_usage, _usage(event))
                continue
            index = event.index
            if index not in sent:
                sent[index] = len(opening := text.echoed(index))
                if opening:  # never with logprobs: the request refuses the two together
                    yield _chunk(text, [_piece(index, opening, None)], include_usage)
            if isinstance(event, TextDelta):
                logprobs = _legacy_logprobs(event.logprobs or [], sent[index])
                sent[index] += len(event.text)
                piece = _piece(index, event.text, logprobs if wants_logprobs else None)
                yield _chunk(text, [piece], include_usage)
            else:
                finished = _piece(index, "", None, _finish_reason(event))
                yield _chunk(text, [finished], include_usage)


class PromptsGeneration(PreparedGeneration):
    """The generations of a list of prompts, run one after the other as one generation:
    choice j of prompt p becomes choice p * n + j, as OpenAI numbers them; the usage is their
    sum (each prompt counted once, whatever `n`)."""

    def __init__(self, generations: Sequence[PreparedGeneration], n: int):
        self._generations = list(generations)
        self._n = n
        self._current = self._generations[0]
        self.prompt_tokens = sum(g.prompt_tokens for g in self._generations)

    @property
    def model(self) -> str:  # type: ignore[override]
        return self._current.model  # a fallback may have taken over

    @property
    def attempts(self) -> list[Any]:  # type: ignore[override]
        return [attempt for g in self._generations for attempt in g.attempts]

    async def events(self) -> AsyncIterator[GenerationEvent]:
        prompt_tokens = completion_tokens = 0
        cached: int | None = None
        for position, generation in enumerate(self._generations):
            self._current = generation
            async for event in generation.events():
                if isinstance(event, Usage):
                    prompt_tokens += event.prompt_tokens
                    completion_tokens += event.completion_tokens
                    if event.cached_tokens is not None:
                        cached = (cached or 0) + event.cached_tokens
                else:
                    yield replace(event, index=position * self._n + event.index)
        yield Usage(prompt_tokens, completion_tokens, cached)


@dataclass(slots=True)
class _ChoiceAccumulator:
    texts: list[str]  # the echoed prompt first, if any
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = "stop"

    def add(self, event: TextDelta | ChoiceFinished) -> None:
        if isinstance(event, TextDelta):
            self.texts.append(event.text)
            self.logprobs.extend(event.logprobs or [])
        else:
            self.finish_reason = _finish_reason(event)

    def as_choice(self, index: int, wants_logprobs: bool) -> CompletionChoice:
        logprobs = _legacy_logprobs(self.logprobs, len(self.texts[0])) if wants_logprobs else None
        return CompletionChoice(
            index=index,
            text="".join(self.texts),
            logprobs=logprobs,
            finish_reason=self.finish_reason,  # type: ignore[arg-type]
        )


def _finish_reason(event: ChoiceFinished) -> str:
    # No tools are offered to a text completion: any other reason is a natural stop.
    return event.finish_reason if event.finish_reason in _FINISH_REASONS else "stop"


def _legacy_logprobs(entries: list[TokenLogprob], offset: int) -> Logprobs:
    """OpenAI's legacy logprobs: per token its text, logprob, the top alternatives with the
    token itself among them (up to `logprobs` + 1), and where it starts in the choice's text."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return Logprobs(
        tokens=[entry.token for entry in entries],
        token_logprobs=[entry.logprob for entry in entries],
        top_logprobs=[
            {**{top.token: top.logprob for top in entry.top_logprobs}, entry.token: entry.logprob}
            for entry in entries
        ],
        text_offset=offsets,
    )


def _piece(
    index: int, text: str, logprobs: Logprobs | None, finish_reason: str | None = None
) -> CompletionChoice:
    # Built without validation: a chunk's finish_reason is null until the choice ends, which
    # the SDK's type (written for the whole object) does not allow.
    return CompletionChoice.model_construct(
        index=index, text=text, logprobs=logprobs, finish_reason=finish_reason
    )


def _chunk(
    text: PreparedText,
    choices: list[CompletionChoice],
    include_usage: bool,
    usage: CompletionUsage | None = None,
) -> Completion:
    chunk = Completion(
        id=text.id,
        object="text_completion",
        created=text.created,
        model=text.generation.model,
        choices=choices,
    )
    if include_usage:
        chunk.usage = usage  # null on every chunk but the last, as OpenAI sends it
    return chunk


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
