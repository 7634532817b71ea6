"""The Conversations API: conversations and their items, scoped to one owner. Responses add
turns to them (services/responses.py); items never expire (OpenAI's rule)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiservice.errors import InvalidRequest, NotFound
from aiservice.governance.accounts import Principal
from aiservice.privacy.redaction import Redactor
from aiservice.services.content_guard import ContentGuard
from aiservice.services.item_references import resolve_references
from aiservice.services.metadata import Metadata
from aiservice.services.pii_store import redacted_items_to_store
from aiservice.services.queries import Page
from aiservice.services.response_items import Item, new_id, stored_input_items
from aiservice.services.response_pii import restored
from aiservice.services.response_request import InputItem
from aiservice.store.conversations import ConversationStore, DuplicateItem, UnknownCursor
from aiservice.store.responses import ResponseStore
from aiservice.store.tables import Conversation

MAX_ITEMS_AT_ONCE = 20


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] | None = Field(default=None, max_length=MAX_ITEMS_AT_ONCE)
    metadata: Metadata | None = None


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: Metadata


class NewItems(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] = Field(min_length=1, max_length=MAX_ITEMS_AT_ONCE)


class ItemPage(Page):
    """The query of `GET /v1/conversations/{id}/items`: newest first by default."""

    order: Literal["asc", "desc"] = "desc"


class ConversationService:
    def __init__(
        self,
        store: ConversationStore,
        responses: ResponseStore,
        guard: ContentGuard | None = None,
    ):
        self._store = store
        self._responses = responses  # where `item_reference` items are looked up
        self._guard = guard  # the PII policy `redact` applies to the items it stores

    async def create(
        self, owner: str, body: NewConversation, principal: Principal | None = None
    ) -> dict[str, Any]:
        items, _ = await self._screened(principal, await self._items(owner, body.items or []))
        row = await self._store.create(
            new_id("conv"), owner, int(time.time()), body.metadata or {}, items
        )
        return _resource(row)

    async def retrieve(self, owner: str, conversation_id: str) -> dict[str, Any]:
        return _resource(await self._row(owner, conversation_id))

    async def update(
        self, owner: str, conversation_id: str, body: ConversationUpdate
    ) -> dict[str, Any]:
        row = await self._store.update_metadata(owner, conversation_id, body.metadata)
        if row is None:
            raise _not_found(conversation_id)
        return _resource(row)

    async def delete(self, owner: str, conversation_id: str) -> dict[str, Any]:
        if not await self._store.delete(owner, conversation_id):
            raise _not_found(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def add_items(
        self,
        owner: str,
        conversation_id: str,
        body: NewItems,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        row = await self._row(owner, conversation_id)
        items, redactor = await self._screened(principal, await self._items(owner, body.items))
        try:
            await self._store.add_items(row, items)
        except DuplicateItem as exc:
            raise InvalidRequest(f"Invalid 'items': {exc}.", param="items") from None
        if redactor is not None:  # stored with placeholders; the caller sees what it sent
            items = restored(items, redactor)
        return _list(items, has_more=False)

    async def list_items(self, owner: str, conversation_id: str, page: ItemPage) -> dict[str, Any]:
        row = await self._row(owner, conversation_id)
        try:
            found = await self._store.items(
                row, limit=page.limit, order=page.order, after=page.after
            )
        except UnknownCursor:
            raise InvalidRequest(
                f"No item found with id '{page.after}' in this conversation.", param="after"
            ) from None
        return _list(found.items, found.has_more)

    async def retrieve_item(self, owner: str, conversation_id: str, item_id: str) -> Item:
        item = await self._store.item(await self._row(owner, conversation_id), item_id)
        if item is None:
            raise _item_not_found(item_id)
        return item

    async def delete_item(self, owner: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        row = await self._row(owner, conversation_id)
        if not await self._store.delete_item(row, item_id):
            raise _item_not_found(item_id)
        return _resource(row)

    async def context_items(self, owner: str, conversation_id: str) -> list[Item]:
        """Every item, in order: a response's context."""
        items = await self._store.all_items(owner, conversation_id)
        if items is None:
            raise NotFound(
                f"Conversation with id '{conversation_id}' not found.", param="conversation"
            )
        return items

    async def _items(self, owner: str, given: list[InputItem]) -> list[Item]:
        items = stored_input_items(given) if given else []
        return await resolve_references(items, owner, self._responses, param="items")

    async def _screened(
        self, principal: Principal | None, items: list[Item]
    ) -> tuple[list[Item], Redactor | None]:
        if self._guard is None:
            return items, None
        return await redacted_items_to_store(self._guard, principal, items)

    async def _row(self, owner: str, conversation_id: str) -> Conversation:
        row = await self._store.get(owner, conversation_id)
        if row is None:
            raise _not_found(conversation_id)
        return row


def _resource(row: Conversation) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "conversation",
        "created_at": row.created_at,
        "metadata": row.metadata_ or {},
    }


def _list(items: list[Item], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else "",
        "last_id": items[-1]["id"] if items else "",
        "has_more": has_more,
    }


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation found with id '{conversation_id}'.")


def _item_not_found(item_id: str) -> NotFound:
    return NotFound(f"No item found with id '{item_id}' in this conversation.")
