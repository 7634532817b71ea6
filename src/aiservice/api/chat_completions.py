"""POST /v1/chat/completions: parse, hand to the service, answer with JSON or an SSE stream."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from aiservice.api.deps import app_services, model_request
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, sse, unless_client_leaves
from aiservice.services.chat_request import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["chat"])


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("/chat/completions")
async def create_chat_completion(request: Request) -> Response:
    principal, body = await model_request(request, ChatCompletionRequest)
    service = app_services(request).chat_completions
    chat = await service.prepare(body, principal.owner)
    if body.stream:
        return EventSourceResponse(sse(service.stream(chat)), sep="\n", ping=15)
    completion = await unless_client_leaves(request, service.complete(chat))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Response(completion.model_dump_json(exclude_unset=True), media_type="application/json")
