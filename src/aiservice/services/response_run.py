"""Run one generation as a response: the Responses streaming events, and the final state.

The same run serves every mode: a plain request reads only the final state, a stream forwards
every event, a background job does either and stores the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiservice.errors import as_service_error
from aiservice.providers.base import ChoiceFinished, PreparedGeneration, TextDelta, Usage
from aiservice.services.response_body import ResponseState
from aiservice.services.response_items import function_call_output_item, message_output
from aiservice.store.response_status import ResponseStatus

log = logging.getLogger(__name__)

Event = dict[str, Any]

# How each final status is announced at the end of a stream.
_FINAL_EVENT = {
    ResponseStatus.COMPLETED: "response.completed",
    ResponseStatus.INCOMPLETE: "response.incomplete",
    ResponseStatus.FAILED: "response.failed",
}
# The events that end a stream: whoever stores or follows one stops at these.
FINAL_EVENT_TYPES = frozenset(_FINAL_EVENT.values())


# A generation's finish that leaves a response incomplete, and the reason it then gives.
_INCOMPLETE_REASON = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponseRun:
    """Turns generation events into response events; `state` holds the response throughout."""

    def __init__(self, state: ResponseState, generation: PreparedGeneration, first_sequence=0):
        self.state = state
        self._generation = generation
        self._sequence = first_sequence
        self._message: dict[str, Any] | None = None  # the output message being written
        self._texts: list[str] = []

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def opening(self) -> list[Event]:
        """`response.created` then `response.in_progress` (a queued response is created
        before it runs: the caller sends `response.created` itself then)."""
        return [
            self._event("response.created", response=self.state.body()),
            *self.started(),
        ]

    def started(self) -> list[Event]:
        self.state.status = ResponseStatus.IN_PROGRESS
        return [self._event("response.in_progress", response=self.state.body())]

    async def events(self) -> AsyncIterator[Event]:
        """Every event from the first output item to the final one. A failure of the
        generation ends the run as `failed` rather than raising."""
        state = self.state
        usage = Usage(self._generation.prompt_tokens, 0)
        finish = "stop"
        try:
            async for event in self._generation.events():
                if isinstance(event, TextDelta):
                    if event.index != 0:
                        continue  # one choice only: the Responses API has no `n`
                    for out in self._text(event.text):
                        yield out
                elif isinstance(event, ChoiceFinished):
                    if event.index != 0:
                        continue
                    finish = event.finish_reason
                    ended_early = finish in ("length", "content_filter")
                    for out in self._close_message("incomplete" if ended_early else None):
                        yield out
                    for call in event.tool_calls or []:
                        for out in self._function_call(call):
                            yield out
                elif isinstance(event, Usage):
                    usage = event
        except Exception as exc:
            error = as_service_error(exc)
            if error.status_code >= 500:
                log.error("response generation failed", extra={"error_type": type(exc).__name__})
            state.model = self._generation.model  # after a fallback, the fallback's
            state.status = ResponseStatus.FAILED
            state.error = {
                "code": "server_error" if error.status_code >= 500 else "invalid_prompt",
                "message": error.message,
            }
            yield self._event(_FINAL_EVENT[ResponseStatus.FAILED], response=state.body())
            return
        state.model = self._generation.model  # after a fallback, the fallback's
        state.usage = usage
        state.completed_at = int(time.time())
        if finish in _INCOMPLETE_REASON:
            state.status = ResponseStatus.INCOMPLETE
            state.incomplete_reason = _INCOMPLETE_REASON[finish]
        else:
            state.status = ResponseStatus.COMPLETED
        yield self._event(_FINAL_EVENT[state.status], response=state.body())

    def _text(self, text: str) -> list[Event]:
        events = []
        if self._message is None:
            self._message = message_output("", status="in_progress")
            self._message["content"] = []
            events.append(self._item_added(self._message))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=self._message["id"],
                    output_index=self._output_index,
                    content_index=0,
                    part=part,
                )
            )
        self._texts.append(text)
        if text:
            events.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self._message["id"],
                    output_index=self._output_index,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        return events

    def _close_message(self, status: str | None) -> list[Event]:
        message = self._message
        if message is None:
            return []
        self._message = None
        text = "".join(self._texts)
        self._texts = []
        done = message_output(text, status=status or "completed", item_id=message["id"])
        index = self._output_index
        self.state.output.append(done)
        part = done["content"][0]
        return [
            self._event(
                "response.output_text.done",
                item_id=done["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                item_id=done["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def _function_call(self, call: Any) -> list[Event]:
        done = function_call_output_item(call)
        added = {**done, "arguments": "", "status": "in_progress"}
        index = self._output_index
        self.state.output.append(done)
        return [
            self._event("response.output_item.added", output_index=index, item=added),
            self._event(
                "response.function_call_arguments.delta",
                item_id=done["id"],
                output_index=index,
                delta=call.arguments,
            ),
            self._event(
                "response.function_call_arguments.done",
                item_id=done["id"],
                output_index=index,
                name=call.name,
                arguments=call.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def _item_added(self, item: dict[str, Any]) -> Event:
        return self._event("response.output_item.added", output_index=self._output_index, item=item)

    @property
    def _output_index(self) -> int:
        # The item being written is the next one after those already done.
        return len(self.state.output)


async def final_state(run: ResponseRun) -> ResponseState:
    """Run to the end, keeping only the final state."""
    async for _ in run.events():
        pass
    return run.state
