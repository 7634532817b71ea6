"""POST /v1/completions (legacy text completions): parse, hand to the service, answer with
JSON or an SSE stream."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from aiservice.api.deps import app_services, model_request
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, sse, unless_client_leaves
from aiservice.services.text_completion_request import TextCompletionRequest

router = APIRouter(prefix="/v1", tags=["completions"])


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("/completions")
async def create_completion(request: Request) -> Response:
    _, body = await model_request(request, TextCompletionRequest)
    service = app_services(request).text_completions
    text = await service.prepare(body)
    if body.stream:
        return EventSourceResponse(sse(service.stream(text)), sep="\n", ping=15)
    completion = await unless_client_leaves(request, service.complete(text))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Response(completion.model_dump_json(exclude_unset=True), media_type="application/json")
