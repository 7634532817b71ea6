"""POST /v1/chat/completions: parse, hand to the service, answer with JSON or an SSE stream."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from sse_starlette import EventSourceResponse

from aiservice.api.deps import Principal, authenticate, chat_completions, json_body
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, sse, unless_client_leaves
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.chat_request import ChatCompletionRequest

# Authentication is the handler's own dependency (it needs the principal): declared on the
# router too, FastAPI solved it twice per request.
router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat/completions")
async def create_chat_completion(
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ChatCompletionService = Depends(chat_completions),
) -> Response:
    body = await json_body(request, ChatCompletionRequest)
    chat = await service.prepare(body, principal.owner)
    if body.stream:
        return EventSourceResponse(sse(service.stream(chat)), sep="\n", ping=15)
    completion = await unless_client_leaves(request, service.complete(chat))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Response(completion.model_dump_json(exclude_unset=True), media_type="application/json")
