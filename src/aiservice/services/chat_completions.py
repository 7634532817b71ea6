"""Create chat completions: route to a provider, then assemble OpenAI's objects from its events."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionTokenLogprob,
)
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_chunk import ChoiceLogprobs as ChunkLogprobs
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.chat.chat_completion_token_logprob import TopLogprob
from openai.types.completion_usage import CompletionUsage

from aiservice.metering.meter import current_meter, metered
from aiservice.providers.base import (
    ChoiceFinished,
    FinishReason,
    PreparedGeneration,
    TextDelta,
    TokenLogprob,
    ToolCall,
    Usage,
)
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.stored_completions import StoredCompletions

_ID_ALPHABET = string.ascii_letters + string.digits


def new_completion_id() -> str:
    # One urandom read for the 29 characters (the modulo's bias is irrelevant to an id).
    return "chatcmpl-" + "".join(_ID_ALPHABET[b % 62] for b in secrets.token_bytes(29))


@dataclass(slots=True)
class PreparedChat:
    """A checked chat completion request with its id, ready to run once."""

    id: str
    created: int
    owner: str
    request: ChatCompletionRequest
    generation: PreparedGeneration


class ChatCompletionService:
    """Create chat completions on whichever provider serves the requested model."""

    def __init__(self, registry: ModelRegistry, stored: StoredCompletions):
        self._registry = registry
        self._stored = stored

    async def prepare(self, request: ChatCompletionRequest, owner: str) -> PreparedChat:
        """Resolve the model and check the request; every refusal is raised here."""
        meter = current_meter()
        if meter is not None:
            meter.requested(request.model, request.metadata)
        served = self._registry.resolve(request.model)
        generation = metered(
            await served.provider.prepare_chat(request.to_generation(served.served_by))
        )
        return PreparedChat(new_completion_id(), int(time.time()), owner, request, generation)

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        choices: dict[int, _ChoiceAccumulator] = {}
        usage = Usage(chat.generation.prompt_tokens, 0)
        async for event in chat.generation.events():
            if isinstance(event, Usage):
                usage = event
            else:
                choices.setdefault(event.index, _ChoiceAccumulator()).add(event)
        completion = _completion(chat, choices, usage)
        if chat.request.store:
            await self._stored.save(chat.owner, chat.request, completion)
        return completion

    async def stream(self, chat: PreparedChat) -> AsyncIterator[ChatCompletionChunk]:
        """OpenAI's chunk sequence: a role chunk per choice, content deltas, a finish chunk,
        then (with `stream_options.include_usage`) one last chunk with no choices and the usage."""
        options = chat.request.stream_options
        include_usage = bool(options and options.include_usage)
        chunk = _ChunkMaker(chat, include_usage)
        started: set[int] = set()
        # Stored streams are assembled on the side and written once the generation has ended,
        # before the last chunk: a client gone earlier leaves nothing half-written.
        stored: dict[int, _ChoiceAccumulator] | None = {} if chat.request.store else None
        async for event in chat.generation.events():
            if isinstance(event, Usage):
                if stored is not None:
                    await self._stored.save(
                        chat.owner, chat.request, _completion(chat, stored, event)
                    )
                if include_usage:
                    yield chunk.make([], usage=_usage(event))
                continue
            if stored is not None:
                stored.setdefault(event.index, _ChoiceAccumulator()).add(event)
            if event.index not in started:
                # Text starts with `content: ""`, a tool call with `content: null`, as OpenAI's
                # streams do; the providers send no text before a tool call, so the first
                # event of a choice says which it is.
                started.add(event.index)
                calls = isinstance(event, ChoiceFinished) and event.tool_calls
                opening = ChoiceDelta(role="assistant", content=None if calls else "")
                yield chunk.delta(event.index, opening)
            if isinstance(event, TextDelta):
                yield chunk.delta(
                    event.index, ChoiceDelta(content=event.text), _chunk_logprobs(event.logprobs)
                )
            elif isinstance(event, ChoiceFinished):
                if event.tool_calls:
                    yield chunk.delta(event.index, ChoiceDelta(tool_calls=_delta_calls(event)))
                yield chunk.delta(event.index, ChoiceDelta(), finish_reason=event.finish_reason)


@dataclass(slots=True)
class _ChoiceAccumulator:
    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    tool_calls: list[ToolCall] | None = None
    wants_logprobs: bool = False

    def add(self, event: TextDelta | ChoiceFinished) -> None:
        if isinstance(event, TextDelta):
            self.texts.append(event.text)
            if event.logprobs is not None:
                self.wants_logprobs = True
                self.logprobs.extend(event.logprobs)
        else:
            self.finish_reason = event.finish_reason
            self.tool_calls = event.tool_calls

    def as_choice(self, index: int) -> Choice:
        text = "".join(self.texts)
        message = ChatCompletionMessage(
            role="assistant",
            content=None if self.tool_calls and not text else text,
            refusal=None,
        )
        if self.tool_calls:
            message.tool_calls = [
                ChatCompletionMessageFunctionToolCall(
                    id=c.id, type="function", function=Function(name=c.name, arguments=c.arguments)
                )
                for c in self.tool_calls
            ]
        logprobs = (
            ChoiceLogprobs(content=_wire_logprobs(self.logprobs), refusal=None)
            if self.wants_logprobs
            else None
        )
        return Choice(
            index=index, message=message, finish_reason=self.finish_reason, logprobs=logprobs
        )


class _ChunkMaker:
    def __init__(self, chat: PreparedChat, include_usage: bool):
        self._id = chat.id
        self._created = chat.created
        self._model = chat.generation.model
        self._include_usage = include_usage

    def make(
        self, choices: list[ChunkChoice], usage: CompletionUsage | None = None
    ) -> ChatCompletionChunk:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=choices,
        )
        if self._include_usage:
            chunk.usage = usage  # null on every chunk but the last, as OpenAI sends it
        return chunk

    def delta(
        self,
        index: int,
        delta: ChoiceDelta,
        logprobs: ChunkLogprobs | None = None,
        finish_reason: FinishReason | None = None,
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(
            index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs
        )
        return self.make([choice])


def _completion(
    chat: PreparedChat, choices: dict[int, _ChoiceAccumulator], usage: Usage
) -> ChatCompletion:
    return ChatCompletion(
        id=chat.id,
        object="chat.completion",
        created=chat.created,
        model=chat.generation.model,
        choices=[choices[i].as_choice(i) for i in sorted(choices)],
        usage=_usage(usage),
    )


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _wire_logprobs(logprobs: list[TokenLogprob]) -> list[ChatCompletionTokenLogprob]:
    return [
        ChatCompletionTokenLogprob(
            token=lp.token,
            logprob=lp.logprob,
            bytes=lp.bytes,
            top_logprobs=[
                TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in lp.top_logprobs
            ],
        )
        for lp in logprobs
    ]


def _chunk_logprobs(logprobs: list[TokenLogprob] | None) -> ChunkLogprobs | None:
    if logprobs is None:
        return None
    return ChunkLogprobs(content=_wire_logprobs(logprobs), refusal=None)


def _delta_calls(event: ChoiceFinished) -> list[ChoiceDeltaToolCall]:
    return [
        ChoiceDeltaToolCall(
            index=position,
            id=call.id,
            type="function",
            function=ChoiceDeltaToolCallFunction(name=call.name, arguments=call.arguments),
        )
        for position, call in enumerate(event.tool_calls or [])
    ]
