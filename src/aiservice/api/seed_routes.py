"""The e-mail manager's REST routes (seed 000) under `/api/ai/chat/completions`.

The same service calls, with the same typed requests, as the OpenAI routes; these handlers
only translate shapes at the edge: the seed's query names in, its Python dictionaries
(services.seed_format) out. Basic auth (e-mail and password) as in the seed's curl
examples, Bearer keys too. Every failure is `{"success": false, "error": "…"}` with its status:
error_handlers speaks that shape for any path under `/api/ai`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Request, Response

from aiservice.api.chat_completions import answer_chat_completion
from aiservice.api.deps import Caller, StoredService, json_body, parse_query
from aiservice.api.error_handlers import SEED_PREFIX
from aiservice.services import seed_format
from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page

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
    # The same SSE chunks as /v1; an error (mid-stream too) in the seed's shape.
    return await answer_chat_completion(
        request, seed_format.completion_result, seed_format.error_result
    )


@router.get("")
async def list_chat_completions(
    request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    query = _query(request, CompletionFilter)
    return seed_format.list_result(await stored.list(caller.owner, query))


@router.get("/{completion_id}")
async def get_chat_completion(
    completion_id: str, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return seed_format.stored_result(await stored.retrieve(caller.owner, completion_id))


@router.post("/{completion_id}")
async def update_chat_completion(
    completion_id: str, request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    body = await json_body(request, MetadataUpdate)
    return seed_format.stored_result(await stored.update(caller.owner, completion_id, body))


@router.delete("/{completion_id}")
async def delete_chat_completion(
    completion_id: str, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return seed_format.deleted_result(await stored.delete(caller.owner, completion_id))


@router.get("/{completion_id}/messages")
async def get_chat_messages(
    completion_id: str, request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    page = _query(request, Page)
    return seed_format.messages_result(await stored.messages(caller.owner, completion_id, page))
