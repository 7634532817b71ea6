"""The Responses API: create (JSON, SSE or background), retrieve, delete, cancel, input items,
input token counts."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from aiservice.api.deps import (
    Principal,
    app_services,
    authenticate,
    json_body,
    model_request,
    query_as,
    responses,
)
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, unless_client_leaves
from aiservice.errors import as_service_error
from aiservice.services.response_request import InputTokensRequest, ResponseRequest
from aiservice.services.response_run import Event
from aiservice.services.responses import ItemPage, ResponseService

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/responses", tags=["responses"])


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("")
async def create_response(request: Request) -> Response:
    principal, body = await model_request(request, ResponseRequest)
    service = app_services(request).responses
    if body.background:
        queued = await service.enqueue(body, principal.owner, principal)
        if body.stream:
            return _event_stream(service.follow(principal.owner, queued["id"]))
        return _json(queued)
    prepared = await service.prepare(body, principal.owner, principal)
    if body.stream:
        return _event_stream(service.stream(prepared))
    answer = await unless_client_leaves(request, service.complete(prepared))
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return _json(answer)


@router.post("/input_tokens")
async def count_input_tokens(
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ResponseService = Depends(responses),
) -> dict[str, Any]:
    body = await json_body(request, InputTokensRequest)
    return await service.count_input_tokens(body, principal.owner)


@router.get("/{response_id}")
async def retrieve_response(
    response_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ResponseService = Depends(responses),
) -> Response:
    query: StreamQuery = query_as(request, StreamQuery)
    if query.stream:
        # Check before the stream starts, so that a refusal is a status code.
        events = service.follow(principal.owner, response_id, query.starting_after)
        first = await anext(events, None)
        return _event_stream(_prepend(first, events))
    return _json(await service.retrieve(principal.owner, response_id))


@router.delete("/{response_id}")
async def delete_response(
    response_id: str,
    principal: Principal = Depends(authenticate),
    service: ResponseService = Depends(responses),
) -> dict[str, Any]:
    return await service.delete(principal.owner, response_id)


@router.post("/{response_id}/cancel")
async def cancel_response(
    response_id: str,
    principal: Principal = Depends(authenticate),
    service: ResponseService = Depends(responses),
) -> Response:
    return _json(await service.cancel(principal.owner, response_id))


@router.get("/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ResponseService = Depends(responses),
) -> dict[str, Any]:
    page: ItemPage = query_as(request, ItemPage)
    return await service.input_items(principal.owner, response_id, page)


class StreamQuery(BaseModel):
    stream: bool = False
    starting_after: int = Field(default=-1, ge=-1, le=2**63 - 1)  # the databases' largest


async def _prepend(first: Event | None, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    if first is not None:
        yield first
        async for event in rest:
            yield event


def _event_stream(events: AsyncIterator[Event]) -> EventSourceResponse:
    return EventSourceResponse(_sse(events), sep="\n", ping=15)


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


async def _sse(events: AsyncIterator[Event]) -> AsyncIterator[ServerSentEvent]:
    """Each event as `event: <type>` + `data: <json>`; the Responses stream has no [DONE].
    A failure once headers are sent travels as an `error` event, as OpenAI does."""
    sequence = 0
    try:
        async for event in events:
            sequence = event["sequence_number"] + 1
            yield ServerSentEvent(event=event["type"], data=json.dumps(event))
    except Exception as exc:
        error = as_service_error(exc)
        if error.status_code >= 500:
            log.error("stream failed", extra={"error_type": type(exc).__name__})
        yield ServerSentEvent(
            event="error",
            data=json.dumps(
                {
                    "type": "error",
                    "sequence_number": sequence,
                    "code": error.code or error.error_type,
                    "message": error.message,
                    "param": error.param,
                }
            ),
        )
