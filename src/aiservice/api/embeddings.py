"""POST /v1/embeddings: parse, hand to the service, answer OpenAI's embedding list."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aiservice.api.deps import app_services, model_request
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, unless_client_leaves
from aiservice.services.embedding_request import EmbeddingRequest

router = APIRouter(prefix="/v1", tags=["embeddings"])


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("/embeddings")
async def create_embeddings(request: Request) -> Response:
    _, body = await model_request(request, EmbeddingRequest)
    service = app_services(request).embeddings
    answer = await unless_client_leaves(request, service.create(body))
    if answer is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    # warnings=False: a base64 embedding is a string where the SDK's type says a list of
    # floats (the SDK decodes it itself).
    return Response(
        answer.model_dump_json(exclude_unset=True, warnings=False), media_type="application/json"
    )
