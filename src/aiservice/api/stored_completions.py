"""Stored chat completions: list, retrieve, update metadata, delete, list messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from aiservice.api.deps import Principal, authenticate, json_body, query_as, stored_completions
from aiservice.services.stored_completions import (
    CompletionFilter,
    MetadataUpdate,
    Page,
    StoredCompletions,
)

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])


@router.get("")
async def list_stored_completions(
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    query: CompletionFilter = query_as(request, CompletionFilter)
    return await stored.list(
        principal.owner,
        limit=query.limit,
        order=query.order,
        after=query.after,
        model=query.model,
        metadata=query.metadata,
    )


@router.get("/{completion_id}")
async def retrieve_stored_completion(
    completion_id: str,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    return await stored.retrieve(principal.owner, completion_id)


@router.post("/{completion_id}")
async def update_stored_completion(
    completion_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    body = await json_body(request, MetadataUpdate)
    return await stored.update(principal.owner, completion_id, body.metadata or {})


@router.delete("/{completion_id}")
async def delete_stored_completion(
    completion_id: str,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    return await stored.delete(principal.owner, completion_id)


@router.get("/{completion_id}/messages")
async def list_stored_messages(
    completion_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    page: Page = query_as(request, Page)
    return await stored.messages(
        principal.owner, completion_id, limit=page.limit, order=page.order, after=page.after
    )
