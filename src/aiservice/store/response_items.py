"""Stored responses' items by id: written with the response, read for `item_reference`.

The rows only point at a response; the item itself is read from that response's input items
or output, so a deleted or expired response's items cannot be referenced any more even before
its rows are purged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store.tables import ResponseItem, StoredResponse

Item = dict[str, Any]


async def index_items(
    session: AsyncSession, owner: str, response_id: str, items: list[Item]
) -> None:
    """Record where each item with an id of `items` (a response's inputs or outputs) lives."""
    rows = [
        {"owner": owner, "item_id": item["id"], "response_id": response_id}
        for item in items
        if isinstance(item.get("id"), str)
    ]
    if rows:
        await session.execute(insert(ResponseItem), rows)


async def forget_items(session: AsyncSession, response_ids: Any) -> None:
    """Drop the rows of these responses (a list of ids, or a select of them)."""
    await session.execute(delete(ResponseItem).where(ResponseItem.response_id.in_(response_ids)))


async def find_items(
    session: AsyncSession, owner: str, item_ids: list[str], visible: tuple[Any, ...]
) -> dict[str, Item]:
    """The owner's stored items among `item_ids`, from responses matching `visible`; an id
    held by several responses comes from the latest."""
    query = (
        select(ResponseItem.item_id, StoredResponse.input_items, StoredResponse.response)
        .join(StoredResponse, StoredResponse.id == ResponseItem.response_id)
        .where(ResponseItem.owner == owner, ResponseItem.item_id.in_(item_ids), *visible)
        .order_by(ResponseItem.seq.desc())
    )
    found: dict[str, Item] = {}
    for item_id, input_items, response in await session.execute(query):
        if item_id in found:
            continue
        for item in [*(input_items or []), *((response or {}).get("output") or [])]:
            if item.get("id") == item_id:
                found[item_id] = item
                break
    return found
