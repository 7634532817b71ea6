"""Stored chat completions: save, list, retrieve, re-label, inspect and delete them."""

from __future__ import annotations

import time
from typing import Any

from openai.types.chat import ChatCompletion

from aiservice.errors import InvalidRequest, NotFound
from aiservice.metering.meter import current_meter
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page
from aiservice.store.completions import CompletionStore, NewCompletion, UnknownCursor
from aiservice.store.tables import StoredCompletion

_WIRE_PART_TYPES = ("text", "image_url")  # the part types a stored message lists back


class StoredCompletions:
    """The stored side of chat completions; every call is scoped to one owner."""

    def __init__(self, store: CompletionStore, retention_days: int):
        self._store = store
        self._retention_s = retention_days * 86400 if retention_days else None

    async def save(
        self, owner: str, request: ChatCompletionRequest, completion: ChatCompletion
    ) -> None:
        usage = completion.usage
        meter = current_meter()  # the request's: who asked, under which request id
        await self._store.insert(
            NewCompletion(
                id=completion.id,
                owner=owner,
                model=completion.model,
                created_at=completion.created,
                expires_at=completion.created + self._retention_s if self._retention_s else None,
                request=request.model_dump(mode="json", exclude_none=True),
                response=completion.model_dump(mode="json", exclude_unset=True),
                metadata=request.metadata or {},
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                key_id=meter.key_id if meter else None,
                request_id=meter.request_id if meter else None,
            )
        )

    async def retrieve(self, owner: str, completion_id: str) -> dict[str, Any]:
        return _wire_completion(await self._row(owner, completion_id))

    async def list(self, owner: str, query: CompletionFilter) -> dict[str, Any]:
        try:
            page = await self._store.list(owner, _now(), query)
        except UnknownCursor:
            raise InvalidRequest(
                f"No stored chat completion found with id '{query.after}'.", param="after"
            ) from None
        return _wire_list([_wire_completion(row) for row in page.rows], page.has_more)

    async def update(self, owner: str, completion_id: str, body: MetadataUpdate) -> dict[str, Any]:
        metadata = body.metadata or {}
        row = await self._store.replace_metadata(owner, completion_id, metadata, _now())
        if row is None:
            raise _not_found(completion_id)
        return _wire_completion(row)

    async def delete(self, owner: str, completion_id: str) -> dict[str, Any]:
        if not await self._store.delete(owner, completion_id, _now()):
            raise _not_found(completion_id)
        return {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}

    async def messages(self, owner: str, completion_id: str, page: Page) -> dict[str, Any]:
        row = await self._row(owner, completion_id)
        messages = [
            _wire_message(f"{completion_id}-{index}", message)
            for index, message in enumerate(row.request.get("messages", []))
        ]
        if page.order == "desc":
            messages.reverse()
        if page.after is not None:
            ids = [message["id"] for message in messages]
            if page.after not in ids:
                raise InvalidRequest(f"No message found with id '{page.after}'.", param="after")
            messages = messages[ids.index(page.after) + 1 :]
        return _wire_list(messages[: page.limit], len(messages) > page.limit)

    async def _row(self, owner: str, completion_id: str) -> StoredCompletion:
        row = await self._store.get(owner, completion_id, _now())
        if row is None:
            raise _not_found(completion_id)
        return row


def _now() -> int:
    return int(time.time())


def _not_found(completion_id: str) -> NotFound:
    # The same answer whether the id never existed or belongs to someone else.
    return NotFound(f"No stored chat completion found with id '{completion_id}'.")


def _wire_list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    # OpenAI's schema requires first_id/last_id as strings; an empty page has "" for both.
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else "",
        "last_id": data[-1]["id"] if data else "",
        "has_more": has_more,
    }


def _wire_completion(row: StoredCompletion) -> dict[str, Any]:
    return {**row.response, "metadata": row.metadata_}


def _wire_message(message_id: str, message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    parts = None
    if isinstance(content, list):
        parts = [part for part in content if part.get("type") in _WIRE_PART_TYPES]
        content = "".join(part.get("text", "") for part in parts if part["type"] == "text")
    wire: dict[str, Any] = {
        "id": message_id,
        "role": message["role"],
        "content": content,
        "refusal": None,
        "name": message.get("name"),
        "content_parts": parts,
    }
    if message.get("tool_calls"):
        wire["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        wire["tool_call_id"] = message["tool_call_id"]
    return wire
