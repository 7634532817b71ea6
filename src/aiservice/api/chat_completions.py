"""POST /v1/chat/completions: parse, hand to the service, answer with JSON or an SSE stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from aiservice.api.deps import app_services, model_request
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, sse, unless_client_leaves
from aiservice.errors import AIServiceError
from aiservice.services.chat_request import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["chat"])

Shape = Callable[[dict[str, Any]], dict[str, Any]]


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("/chat/completions")
async def create_chat_completion(request: Request) -> Response:
    return await answer_chat_completion(request)


async def answer_chat_completion(
    request: Request,
    shape: Shape | None = None,
    stream_error: Callable[[AIServiceError], dict[str, Any]] = AIServiceError.envelope,
) -> Response:
    """The one path of a chat completion over HTTP; `shape` rewrites the completion and
    `stream_error` an error event for a route that speaks another dialect (the seed's)."""
    principal, body = await model_request(request, ChatCompletionRequest)
    service = app_services(request).chat_completions
    chat = await service.prepare(body, principal.owner, principal)
    if body.stream:  # the same SSE chunks for every route; only an error event may differ
        return EventSourceResponse(sse(service.stream(chat), stream_error), sep="\n", ping=15)
    completion = await unless_client_leaves(request, service.complete(chat))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if shape is None:  # straight to JSON: the hot path of /v1
        return Response(
            completion.model_dump_json(exclude_unset=True), media_type="application/json"
        )
    return JSONResponse(shape(completion.model_dump(mode="json", exclude_unset=True)))
