"""Stored chat completions: list, retrieve, update metadata, delete, list messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from aiservice.api.deps import Caller, StoredService, json_body, query_as
from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])


@router.get("")
async def list_stored_completions(
    request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return await stored.list(caller.owner, query_as(request, CompletionFilter))


@router.get("/{completion_id}")
async def retrieve_stored_completion(
    completion_id: str, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return await stored.retrieve(caller.owner, completion_id)


@router.post("/{completion_id}")
async def update_stored_completion(
    completion_id: str, request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return await stored.update(
        caller.owner, completion_id, await json_body(request, MetadataUpdate)
    )


@router.delete("/{completion_id}")
async def delete_stored_completion(
    completion_id: str, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return await stored.delete(caller.owner, completion_id)


@router.get("/{completion_id}/messages")
async def list_stored_messages(
    completion_id: str, request: Request, caller: Caller, stored: StoredService
) -> dict[str, Any]:
    return await stored.messages(caller.owner, completion_id, query_as(request, Page))
