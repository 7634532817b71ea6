"""Stored chat completions: list, retrieve, update metadata, delete, list messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from aiservice.api.deps import Principal, authenticate, json_body, stored_completions
from aiservice.api.error_handlers import validation_error
from aiservice.services.stored_completions import (
    CompletionFilter,
    MetadataUpdate,
    Page,
    StoredCompletions,
)

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])
_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


def _query(request: Request, shape: type[Page]) -> Any:
    return parse_query(request.query_params.multi_items(), shape)


def parse_query(items: Iterable[tuple[str, str]], shape: type[Page]) -> Any:
    """Query parameters as `shape`; `metadata[key]=value` pairs become the metadata filter."""
    values: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for name, value in items:
        if match := _METADATA_PARAM.match(name):
            metadata[match.group(1)] = value
        elif name in shape.model_fields:
            values[name] = value
    if metadata:
        values["metadata"] = metadata
    try:
        return shape.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


@router.get("")
async def list_stored_completions(
    request: Request,
    principal: Principal = Depends(authenticate),
    stored: StoredCompletions = Depends(stored_completions),
) -> dict[str, Any]:
    query: CompletionFilter = _query(request, CompletionFilter)
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
    page: Page = _query(request, Page)
    return await stored.messages(
        principal.owner, completion_id, limit=page.limit, order=page.order, after=page.after
    )
