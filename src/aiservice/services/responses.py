"""The Responses API: create (now, streamed or in the background), chain, retrieve, cancel,
delete, list input items, count input tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from aiservice.errors import ContextLengthExceeded, InvalidRequest, NotFound
from aiservice.governance.accounts import Principal
from aiservice.metering.meter import Meter, current_meter, metered
from aiservice.privacy.redaction import Redactor
from aiservice.providers.base import (
    FunctionTool,
    GenerationRequest,
    OutputFormat,
    PreparedGeneration,
    PromptMessage,
)
from aiservice.providers.registry import ModelRegistry
from aiservice.services.content_guard import ContentGuard
from aiservice.services.content_policy import ContentPolicy
from aiservice.services.conversations import ConversationService
from aiservice.services.event_hub import EventHub
from aiservice.services.item_references import resolve_references
from aiservice.services.moderation_param import ModerationParam
from aiservice.services.pii_screen import offloaded
from aiservice.services.queries import Page
from aiservice.services.response_body import Body, ResponseState
from aiservice.services.response_items import Item, new_id, prompt_messages, stored_input_items
from aiservice.services.response_pii import (
    item_texts,
    redacted_input,
    redacted_items,
    restored,
    restored_events,
)
from aiservice.services.response_request import (
    InputTokensRequest,
    ResponseRequest,
    _ResponseInput,
)
from aiservice.services.response_run import FINAL_EVENT_TYPES, Event, ResponseRun, final_state
from aiservice.services.zero_retention import keeps_nothing, refuse_storage
from aiservice.store.conversations import ConversationStore, Turn
from aiservice.store.response_status import UNFINISHED, ResponseStatus
from aiservice.store.responses import NewResponse, Outcome, ResponseStore
from aiservice.store.tables import StoredResponse

# A chain may only continue from a response that has ended with output.
_CONTINUABLE = (ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE)


class ItemPage(Page):
    """The query of `GET /v1/responses/{id}/input_items`: newest first by default."""

    order: Literal["asc", "desc"] = "desc"


@dataclass(slots=True)
class PreparedResponse:
    """A checked request with its id, ready to run once."""

    owner: str
    request: ResponseRequest
    input_items: list[Item]
    state: ResponseState
    generation: PreparedGeneration
    redactor: Redactor | None = None  # with the PII policy `redact`: restores the answer


class ResponseService:
    """Every call is scoped to one owner; background jobs are run by `run_job`."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: ResponseStore,
        conversations: ConversationService,
        conversation_store: ConversationStore,
        guard: ContentGuard,
        retention_days: int,
        on_enqueued: Callable[[], None] = lambda: None,
        on_cancelled: Callable[[str], None] = lambda _id: None,
        poll_s: float = 0.5,
    ):
        self._registry = registry
        self._store = store
        self._conversations = conversations
        self._conversation_store = conversation_store
        self._guard = guard
        self.event_hub = EventHub()
        self._poll_s = poll_s
        self._retention_s = retention_days * 86400 if retention_days else None
        # Set by the in-process worker: wake it at once, stop a job it runs at once.
        self.on_enqueued = on_enqueued
        self.on_cancelled = on_cancelled

    @property
    def guard(self) -> ContentGuard:
        """The content policy of model requests (batch lines and documents are redacted by it
        before they are stored)."""
        return self._guard

    # --- create -----------------------------------------------------------------------------

    async def prepare(
        self, request: ResponseRequest, owner: str, principal: Principal | None = None
    ) -> PreparedResponse:
        """Resolve the model and the chain and check the request (moderation in block mode
        included); every refusal is raised here. `principal` names the operator's content
        policy for the caller (None: the configured defaults)."""
        request = _unstored_for(principal, request)
        _meter_request(request)
        input_items = await self._input_items(request, owner)
        policy = self._guard.policy(request.moderation, principal)
        request, input_items, redactor = await self._screened(policy, request, input_items)
        state = ResponseState(new_id("resp"), int(time.time()), request, request.model)
        state.moderation = await self._guard.check_input(
            policy, partial(_user_text, input_items), "input"
        )
        generation = await self._generation(request, owner, input_items)
        generation = self._guard.moderated(generation, policy, state.moderation)
        state.model = generation.model
        return PreparedResponse(owner, request, input_items, state, generation, redactor)

    async def _screened(
        self, policy: ContentPolicy, request: ResponseRequest, items: list[Item]
    ) -> tuple[ResponseRequest, list[Item], Redactor | None]:
        """The request and input items as the model and the store may see them (PII)."""
        if policy.pii == "off":  # the common case: no text is collected
            return request, items, None
        texts = item_texts(items) + ([request.instructions] if request.instructions else [])
        redactor = await self._guard.pii.redactor(policy.pii, texts)
        if redactor is None:
            return request, items, None
        items = await offloaded(texts, partial(redacted_items, items, redactor))
        if request.instructions:
            request = request.model_copy(
                update={"instructions": redactor.redact(request.instructions)}
            )
        self._guard.pii.redacted(redactor)
        # The stored request (a job's, run again by a worker) keeps no original either: its
        # input redacted once more, after counting, gets the very same placeholders.
        redacted = await offloaded(texts, partial(redacted_input, request.input, redactor))
        return request.model_copy(update={"input": redacted}), items, redactor

    async def complete(self, prepared: PreparedResponse) -> Body:
        state = await final_state(ResponseRun(prepared.state, prepared.generation))
        await self._keep(prepared, state)
        if prepared.redactor is not None:
            return restored(state.body(), prepared.redactor)
        return state.body()

    def stream(self, prepared: PreparedResponse) -> AsyncIterator[Event]:
        """The event sequence; a stored response is written once it has ended, before its
        last event, so a client gone earlier leaves nothing half-written."""
        events = self._events(prepared)
        if prepared.redactor is None:
            return events
        return restored_events(events, prepared.redactor)

    async def _events(self, prepared: PreparedResponse) -> AsyncIterator[Event]:
        run = ResponseRun(prepared.state, prepared.generation)
        for event in run.opening():
            yield event
        async for event in run.events():
            if event["type"] in FINAL_EVENT_TYPES:
                await self._keep(prepared, run.state)
            yield event

    async def enqueue(
        self, request: ResponseRequest, owner: str, principal: Principal | None = None
    ) -> Body:
        """Store a background response as `queued`; a worker runs it (and writes its usage
        record when it ends) under the content policy it was accepted with."""
        refuse_storage(principal, "Background responses", "background")
        meter = _meter_request(request)
        input_items = await self._input_items(request, owner)
        policy = self._guard.policy(request.moderation, principal)
        request, input_items, _ = await self._screened(policy, request, input_items)
        await self._guard.check_input(policy, partial(_user_text, input_items), "input")
        if policy.moderated:
            kept = ModerationParam.model_validate(policy.as_param())
            request = request.model_copy(update={"moderation": kept})
        # Prepared and dropped: what a worker would refuse (too long, a bad schema) is refused
        # now, with a status code, rather than later as a failed job.
        generation = await self._generation(request, owner, input_items)
        state = ResponseState(new_id("resp"), int(time.time()), request, generation.model)
        state.status = ResponseStatus.QUEUED
        body = state.body()
        # A streamed background response records its events from the first: `created`.
        first_events = (
            [{"type": "response.created", "sequence_number": 0, "response": body}]
            if request.stream
            else []
        )
        await self._store.insert(
            NewResponse(
                id=state.id,
                owner=owner,
                model=state.model,
                status=ResponseStatus.QUEUED,
                background=True,
                created_at=state.created_at,
                expires_at=self._expiry(state.created_at),
                previous_response_id=request.previous_response_id,
                request=_request_document(request),
                input_items=input_items,
                response=body,
                queued_at=time.time(),
                key_id=meter.key_id if meter else None,
                request_id=meter.request_id if meter else None,
                conversation_id=request.conversation_id,
            ),
            first_events,
        )
        if meter is not None:
            meter.deferred = True
        self.on_enqueued()
        return body

    async def follow(self, owner: str, response_id: str, after: int = -1) -> AsyncIterator[Event]:
        """The recorded events of a streamed background response after `after`, then the new
        ones as they are recorded, until the last. Any process can follow any job."""
        row = await self._row(owner, response_id)
        if not row.background or not row.request.get("stream"):
            raise InvalidRequest(
                "Only responses created with background=true and stream=true can be streamed "
                "again.",
                param="stream",
            )
        with self.event_hub.listen(response_id) as recorded:
            while True:
                recorded.clear()
                events = await self._store.events_after(response_id, after)
                if not events and await self._store.status(response_id) not in UNFINISHED:
                    # Ended (or deleted) without a last event to wait for: a cancel, or a job
                    # out of attempts. Its last events may have landed since the read above.
                    for event in await self._store.events_after(response_id, after):
                        yield event
                    return
                for event in events:
                    yield event
                    after = event["sequence_number"]
                    if event["type"] in FINAL_EVENT_TYPES:
                        return
                with suppress(TimeoutError):
                    await asyncio.wait_for(recorded.wait(), self._poll_s)

    async def _keep(self, prepared: PreparedResponse, state: ResponseState) -> None:
        """Store the ended response and add its turn to its conversation, in one transaction."""
        turn = conversation_turn(prepared, state)
        if prepared.request.stored:
            await self._save(prepared, state, turn)
        elif turn is not None:
            await self._conversation_store.append(turn)

    async def _save(
        self, prepared: PreparedResponse, state: ResponseState, turn: Turn | None
    ) -> None:
        usage = state.usage
        await self._store.insert(
            NewResponse(
                id=state.id,
                owner=prepared.owner,
                model=state.model,
                status=state.status,
                background=False,
                created_at=state.created_at,
                expires_at=self._expiry(state.created_at),
                previous_response_id=prepared.request.previous_response_id,
                request=_request_document(prepared.request),
                input_items=prepared.input_items,
                response=state.body(),
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            turn=turn,
        )

    def _expiry(self, created_at: int) -> int | None:
        return created_at + self._retention_s if self._retention_s else None

    # --- background jobs --------------------------------------------------------------------

    async def prepare_job(self, row: StoredResponse) -> PreparedResponse:
        """The generation of a claimed job, from what was stored when it was enqueued."""
        request = ResponseRequest.model_validate(row.request)
        state = ResponseState(row.id, row.created_at, request, row.model)
        policy = self._guard.policy(request.moderation, None)
        state.moderation = await self._guard.check_input(
            policy, partial(_user_text, row.input_items), "input"
        )
        generation = await self._generation(request, row.owner, row.input_items)
        generation = self._guard.moderated(generation, policy, state.moderation)
        state.model = generation.model
        return PreparedResponse(row.owner, request, row.input_items, state, generation)

    @staticmethod
    def outcome(
        prepared: PreparedResponse, state: ResponseState, events: list[Event] | None = None
    ) -> Outcome:
        usage = state.usage
        return Outcome(
            status=state.status,
            response=state.body(),
            model=state.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            events=events or [],
            turn=conversation_turn(prepared, state),
        )

    @staticmethod
    def failed_body(row: StoredResponse, message: str, code: str = "server_error") -> Body:
        body = dict(row.response)
        body.update(status=ResponseStatus.FAILED, error={"code": code, "message": message})
        return body

    # --- stored responses -------------------------------------------------------------------

    async def retrieve(self, owner: str, response_id: str) -> Body:
        return _wire(await self._row(owner, response_id))

    async def delete(self, owner: str, response_id: str) -> dict[str, Any]:
        row = await self._row(owner, response_id)
        if row.status in UNFINISHED:
            await self.cancel(owner, response_id)
        if not await self._store.delete(owner, response_id):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def cancel(self, owner: str, response_id: str) -> Body:
        """Cancel a background response; idempotent, and a finished one is returned as is."""
        row = await self._row(owner, response_id)
        if not row.background:
            raise InvalidRequest("Only responses created with background=true can be cancelled.")
        if row.status in UNFINISHED:
            body = {**row.response, "status": ResponseStatus.CANCELLED, "output": []}
            if await self._store.cancel(owner, response_id, body):
                self.on_cancelled(response_id)
            row = await self._row(owner, response_id)
        return _wire(row)

    async def input_items(self, owner: str, response_id: str, page: ItemPage) -> dict[str, Any]:
        items = (await self._row(owner, response_id)).input_items
        if page.order == "desc":
            items = list(reversed(items))
        start = 0
        if page.after is not None:
            positions = [i for i, item in enumerate(items) if item.get("id") == page.after]
            if not positions:
                raise InvalidRequest(
                    f"No input item found with id '{page.after}' in this response.", param="after"
                )
            start = positions[0] + 1
        data = items[start : start + page.limit]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "",
            "has_more": start + page.limit < len(items),
        }

    async def count_input_tokens(self, request: InputTokensRequest, owner: str) -> dict[str, Any]:
        try:
            items = await self._input_items(request, owner)
            generation = await self._generation(request, owner, items)
            tokens = generation.prompt_tokens
        except ContextLengthExceeded as exc:
            if exc.prompt_tokens is None:
                raise
            tokens = exc.prompt_tokens  # too long to run, not too long to count
        return {"object": "response.input_tokens", "input_tokens": tokens}

    async def _row(self, owner: str, response_id: str) -> StoredResponse:
        row = await self._store.get(owner, response_id, int(time.time()))
        if row is None:
            raise _not_found(response_id)
        return row

    # --- the model's input ------------------------------------------------------------------

    async def _generation(
        self, request: _ResponseInput, owner: str, input_items: list[Item]
    ) -> PreparedGeneration:
        """The prepared generation: instructions, then the chain's items, then this input.
        Earlier instructions are not carried over (OpenAI's rule). With `truncation: auto`
        the oldest items are dropped until the input fits the model."""
        served = self._registry.resolve(request.model)
        items: list[Item] = []
        if request.previous_response_id is not None:
            items = await self._chain_items(owner, request.previous_response_id)
        elif request.conversation_id is not None:
            items = await self._conversations.context_items(owner, request.conversation_id)
        items += input_items
        system = [PromptMessage("system", request.instructions)] if request.instructions else []
        messages = prompt_messages(items)
        while True:
            generation_request = _generation_request(request, served.served_by, system + messages)
            try:
                return metered(await served.provider.prepare_chat(generation_request))
            except ContextLengthExceeded as exc:
                if request.truncation != "auto" or len(messages) <= 1:
                    exc.param = "input"
                    raise
                messages = messages[_oldest_to_drop(messages, exc) :]

    async def _input_items(self, request: _ResponseInput, owner: str) -> list[Item]:
        """The request's input items, each `item_reference` replaced by the item it names
        (one of the caller's stored responses). In a conversation, a reference to one of its
        own items is dropped: the model sees that item in the context already, and the turn
        must not add it twice."""
        items = stored_input_items(request.input)
        named = isinstance(request.input, list) and any(item.id for item in request.input)
        if request.conversation_id is None or not named:
            return await resolve_references(items, owner, self._store)
        context = await self._conversations.context_items(owner, request.conversation_id)
        held = {item["id"] for item in context}
        for index, item in enumerate(items):
            if item.get("type") != "item_reference" and item["id"] in held:
                raise InvalidRequest(
                    f"Invalid 'input[{index}]': an item with id '{item['id']}' is already in "
                    "the conversation.",
                    param=f"input[{index}]",
                )
        resolved = await resolve_references(items, owner, self._store, context)
        return [
            item
            for item, given in zip(resolved, items, strict=True)
            if not (given.get("type") == "item_reference" and given["id"] in held)
        ]

    async def _chain_items(self, owner: str, previous_id: str) -> list[Item]:
        chain, missing = await self._store.chain(owner, previous_id, int(time.time()))
        if missing is not None:
            raise NotFound(
                f"Previous response with id '{missing}' not found.", param="previous_response_id"
            )
        last = chain[-1]
        if last.status not in _CONTINUABLE:
            raise InvalidRequest(
                f"Previous response with id '{previous_id}' is {last.status}; only a completed "
                "or incomplete response can be continued.",
                param="previous_response_id",
            )
        items: list[Item] = []
        for row in chain:
            items += row.input_items
            items += row.response.get("output") or []
        return items


_TURN_CHARS = 32  # about what a chat template writes around each message


def _oldest_to_drop(messages: list[PromptMessage], exc: ContextLengthExceeded) -> int:
    """How many of the oldest messages `truncation: auto` drops next: one when the provider
    did not say by how much the input is too long; else as many as hold that share of its
    text, so that a long input fits in a few tries rather than one try a message."""
    if exc.prompt_tokens is None or exc.max_prompt_tokens is None:
        return 1
    excess = exc.prompt_tokens - max(exc.max_prompt_tokens, 0)
    sizes = [len(m.content) + _TURN_CHARS for m in messages]
    to_drop = sum(sizes) * excess / max(exc.prompt_tokens, 1)
    dropped, chars = 0, 0
    while dropped < len(messages) - 1 and chars < to_drop:
        chars += sizes[dropped]
        dropped += 1
    return max(dropped, 1)


def _unstored_for(principal: Principal | None, request: ResponseRequest) -> ResponseRequest:
    """The request as a zero-retention caller's is run: answered, never stored. A turn of a
    conversation would be stored in it: refused."""
    if not keeps_nothing(principal):
        return request
    if request.conversation_id is not None:
        refuse_storage(principal, "Responses in a conversation", "conversation")
    return request.model_copy(update={"store": False})


def _meter_request(request: ResponseRequest) -> Meter | None:
    meter = current_meter()
    if meter is not None:
        meter.requested(request.model, request.metadata, request.safety_identifier or request.user)
    return meter


def conversation_turn(prepared: PreparedResponse, state: ResponseState) -> Turn | None:
    """What the response adds to its conversation: nothing unless it ended with output."""
    conversation_id = prepared.request.conversation_id
    if conversation_id is None or state.status not in _CONTINUABLE:
        return None
    return Turn(prepared.owner, conversation_id, prepared.input_items + state.output)


def _generation_request(
    request: _ResponseInput, served_model: str, messages: list[PromptMessage]
) -> GenerationRequest:
    tools = [FunctionTool(t.name or "", t.description, t.parameters) for t in request.tools or []]
    choice = request.tool_choice
    if choice is None:
        tool_choice = "auto" if tools else "none"
    else:
        tool_choice = choice if isinstance(choice, str) else choice.name
    generation = GenerationRequest(
        model=served_model,
        messages=messages,
        output_format=_output_format(request),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=request.parallel_tool_calls is not False,
    )
    if isinstance(request, ResponseRequest):
        generation.stream = bool(request.stream)
        generation.max_tokens = request.max_output_tokens
        generation.temperature = 1.0 if request.temperature is None else request.temperature
        generation.top_p = 1.0 if request.top_p is None else request.top_p
    return generation


def _output_format(request: _ResponseInput) -> OutputFormat | None:
    text_format = request.text.format if request.text is not None else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return OutputFormat("json_object")
    return OutputFormat("json_schema", text_format.schema_)


def _user_text(items: list[Item]) -> str:
    """What the users wrote in this request's input: what moderation checks."""
    return "\n".join(m.content for m in prompt_messages(items) if m.role == "user")


def _request_document(request: ResponseRequest) -> dict[str, Any]:
    """The request as given, to run it again in a worker. `stream` matters only in the
    background: the worker then records the events."""
    document = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not request.background:
        document.pop("stream", None)
    return document


def _wire(row: StoredResponse) -> Body:
    # The status column is the truth: a job's status moves without rewriting its body.
    return {**row.response, "status": row.status}


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.")
