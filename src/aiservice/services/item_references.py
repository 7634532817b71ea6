"""`item_reference` input items: `{"type": "item_reference", "id": …}` stands for an item
stored earlier, and is replaced by it before anything else reads the input."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiservice.errors import NotFound
from aiservice.services.response_items import Item
from aiservice.store.responses import ResponseStore


async def resolve_references(
    items: list[Item],
    owner: str,
    responses: ResponseStore,
    context: Iterable[Item] = (),
    param: str = "input",
) -> list[Item]:
    """`items` with each reference replaced by the item it names: one of `context` (a
    conversation's items) or of the owner's stored responses. An unknown id is a 404 at
    `param[i]`, the same whether it never existed or is another tenant's."""
    wanted = [item["id"] for item in items if item.get("type") == "item_reference"]
    if not wanted:
        return items
    found = {item["id"]: item for item in context if item.get("id") in wanted}
    missing = [item_id for item_id in wanted if item_id not in found]
    if missing:
        found |= await responses.items(owner, missing, int(time.time()))
    resolved: list[Item] = []
    for index, item in enumerate(items):
        if item.get("type") != "item_reference":
            resolved.append(item)
        elif item["id"] in found:
            resolved.append(found[item["id"]])
        else:
            raise NotFound(f"Item with id '{item['id']}' not found.", param=f"{param}[{index}]")
    return resolved
