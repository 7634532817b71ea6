"""The Conversations API: conversations and their items."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from aiservice.api.deps import Principal, authenticate, conversations, json_body, query_as
from aiservice.services.conversations import (
    ConversationService,
    ConversationUpdate,
    ItemPage,
    NewConversation,
    NewItems,
)
from aiservice.services.zero_retention import refuse_storage

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post("")
async def create_conversation(
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    refuse_storage(principal, "Conversations")
    body = await json_body(request, NewConversation)
    return await service.create(principal.owner, body, principal)


@router.get("/{conversation_id}")
async def retrieve_conversation(
    conversation_id: str,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    return await service.retrieve(principal.owner, conversation_id)


@router.post("/{conversation_id}")
async def update_conversation(
    conversation_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    body = await json_body(request, ConversationUpdate)
    return await service.update(principal.owner, conversation_id, body)


@router.delete("/{conversation_id}")
async def delete_conversation(
    conversation_id: str,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    return await service.delete(principal.owner, conversation_id)


@router.post("/{conversation_id}/items")
async def add_items(
    conversation_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    refuse_storage(principal, "Conversation items")
    body = await json_body(request, NewItems)
    return await service.add_items(principal.owner, conversation_id, body, principal)


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    page: ItemPage = query_as(request, ItemPage)
    return await service.list_items(principal.owner, conversation_id, page)


@router.get("/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str,
    item_id: str,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    return await service.retrieve_item(principal.owner, conversation_id, item_id)


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str,
    item_id: str,
    principal: Principal = Depends(authenticate),
    service: ConversationService = Depends(conversations),
) -> dict[str, Any]:
    return await service.delete_item(principal.owner, conversation_id, item_id)
