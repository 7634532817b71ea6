"""Create chat completions: route to a provider, then assemble OpenAI's objects from its events."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionTokenLogprob,
)
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs, Moderation
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_chunk import ChoiceLogprobs as ChunkLogprobs
from openai.types.chat.chat_completion_chunk import Moderation as ChunkModeration
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.chat.chat_completion_token_logprob import TopLogprob
from openai.types.completion_usage import CompletionUsage

from aiservice.governance.accounts import Principal
from aiservice.metering.meter import current_meter, metered
from aiservice.privacy.redaction import Redactor
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
from aiservice.services.chat_pii import (
    message_texts,
    redacted_request,
    restored_chunks,
    restored_completion,
)
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.content_guard import ContentGuard
from aiservice.services.moderated_generation import ModerationReport
from aiservice.services.pii_screen import offloaded
from aiservice.services.stored_completions import StoredCompletions
from aiservice.services.zero_retention import keeps_nothing

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
    moderation: ModerationReport | None = None  # a moderated request's findings
    redactor: Redactor | None = None  # with the PII policy `redact`: restores the answer


class ChatCompletionService:
    """Create chat completions on whichever provider serves the requested model."""

    def __init__(self, registry: ModelRegistry, stored: StoredCompletions, guard: ContentGuard):
        self._registry = registry
        self._stored = stored
        self._guard = guard

    async def prepare(
        self, request: ChatCompletionRequest, owner: str, principal: Principal | None = None
    ) -> PreparedChat:
        """Resolve the model and check the request (moderation in block mode included);
        every refusal is raised here. `principal` names the operator's policy for the caller
        (None: the configured defaults)."""
        meter = current_meter()
        if meter is not None:
            meter.requested(
                request.model, request.metadata, request.safety_identifier or request.user
            )
        served = self._registry.resolve(request.model)
        if request.store and keeps_nothing(principal):  # answered, never stored
            request = request.model_copy(update={"store": False})
        policy = self._guard.policy(request.moderation, principal)
        if policy.pii != "off":  # what the model and the store see from here on
            texts = message_texts(request)
            redactor = await self._guard.pii.redactor(policy.pii, texts)
            if redactor is not None:
                request = await offloaded(texts, partial(redacted_request, request, redactor))
                self._guard.pii.redacted(redactor)
        else:
            redactor = None
        redacted = request  # the input moderation reads: what the model will see
        report = await self._guard.check_input(policy, lambda: redacted.user_text, "messages")
        generation = await served.provider.prepare_chat(request.to_generation(served.served_by))
        generation = metered(self._guard.moderated(generation, policy, report))
        return PreparedChat(
            new_completion_id(), int(time.time()), owner, request, generation, report, redactor
        )

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
        if chat.redactor is not None:
            return restored_completion(completion, chat.redactor)
        return completion

    def stream(self, chat: PreparedChat) -> AsyncIterator[ChatCompletionChunk]:
        """OpenAI's chunk sequence: a role chunk per choice, content deltas, a finish chunk,
        (for a moderated request) a chunk with no choices and the moderation, then (with
        `stream_options.include_usage`) one last chunk with no choices and the usage."""
        chunks = self._chunks(chat)
        return chunks if chat.redactor is None else restored_chunks(chunks, chat.redactor)

    async def _chunks(self, chat: PreparedChat) -> AsyncIterator[ChatCompletionChunk]:
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
                if chat.moderation is not None:  # the findings, once the output is known
                    yield chunk.make([], moderation=chat.moderation.chat_body())
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
        self._generation = chat.generation  # its model may change: a fallback takes over
        self._include_usage = include_usage

    def make(
        self,
        choices: list[ChunkChoice],
        usage: CompletionUsage | None = None,
        moderation: dict[str, Any] | None = None,
    ) -> ChatCompletionChunk:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._generation.model,
            choices=choices,
        )
        if moderation is not None:
            chunk.moderation = ChunkModeration.model_validate(moderation)
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
    completion = ChatCompletion(
        id=chat.id,
        object="chat.completion",
        created=chat.created,
        model=chat.generation.model,
        choices=[choices[i].as_choice(i) for i in sorted(choices)],
        usage=_usage(usage),
    )
    if chat.moderation is not None:
        completion.moderation = Moderation.model_validate(chat.moderation.chat_body())
    return completion


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
