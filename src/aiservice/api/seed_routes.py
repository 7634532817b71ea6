"""The e-mail manager's REST routes (seed 000) under `/api/ai/chat/completions`.

Thin handlers over the same services as the OpenAI routes; the bodies are the seed's Python
dictionaries (services.seed_format). Basic auth (e-mail and password) as in the seed's curl
examples, Bearer keys too. Every failure is `{"success": false, "error": "…"}` with its status:
error_handlers speaks that shape for any path under `/api/ai`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from aiservice.api.deps import (
    Principal,
    app_services,
    authenticate,
    json_body,
    model_request,
    parse_query,
    stored_completions,
)
from aiservice.api.error_handlers import SEED_PREFIX
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, sse, unless_client_leaves
from aiservice.services import seed_format
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.stored_completions import (
    CompletionFilter,
    MetadataUpdate,
    Page,
    StoredCompletions,
)

log = logging.getLogger(__name__)

# The seed's Python names (`model_filter=`, `metadata_filter={...}`) as query parameters:
# `model_filter=X` is `model=X`, `metadata_filter[key]=value` is `metadata[key]=value`.
_SEED_PARAM_NAME = re.compile(r"^(model|metadata)_filter(?=$|\[)")


# Each route authenticates itself: a router-wide dependency would keep the POST from being
# served before FastAPI's router (hot_routes).
router = APIRouter(prefix=f"{SEED_PREFIX}/chat/completions", tags=["seed"])


def _query(request: Request, shape: type[Page]) -> Any:
    items = request.query_params.multi_items()
    return parse_query([(_SEED_PARAM_NAME.sub(r"\1", name), value) for name, value in items], shape)


# Only the request as parameter: hot_routes calls this very function before FastAPI's router.
@router.post("", response_model=None)
async def create_chat_completion(request: Request) -> Response:
    principal, body = await model_request(request, ChatCompletionRequest)
    service = app_services(request).chat_completions
    chat = await service.prepare(body, principal.owner)
    if body.stream:  # the same SSE chunks as /v1; an error mid-stream in the seed's shape
        stream = sse(service.stream(chat), seed_format.error_result)
        return EventSourceResponse(stream, sep="\n", ping=15)
    completion = await unless_client_leaves(request, service.complete(chat))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    result = seed_format.completion_result(completion.model_dump(mode="json", exclude_unset=True))
    return JSONResponse(result)


@router.get("")
async def list_chat_completions(
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    query: CompletionFilter = _query(request, CompletionFilter)
    page = await stored.list(
        principal.owner,
        limit=query.limit,
        order=query.order,
        after=query.after,
        model=query.model,
        metadata=query.metadata,
    )
    return seed_format.list_result(page)


@router.get("/{completion_id}")
async def get_chat_completion(
    completion_id: str,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    return seed_format.stored_result(await stored.retrieve(principal.owner, completion_id))


@router.post("/{completion_id}")
async def update_chat_completion(
    completion_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    body = await json_body(request, MetadataUpdate)
    updated = await stored.update(principal.owner, completion_id, body.metadata or {})
    return seed_format.stored_result(updated)


@router.delete("/{completion_id}")
async def delete_chat_completion(
    completion_id: str,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    return seed_format.deleted_result(await stored.delete(principal.owner, completion_id))


@router.get("/{completion_id}/messages")
async def get_chat_messages(
    completion_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    page: Page = _query(request, Page)
    messages = await stored.messages(
        principal.owner, completion_id, limit=page.limit, order=page.order, after=page.after
    )
    return seed_format.messages_result(messages)
