"""The Batch API: create, retrieve, list and cancel batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from aiservice.api.deps import Caller, app_services, json_body, query_as
from aiservice.services.batch_request import BatchPage, CreateBatchRequest

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post("")
async def create_batch(request: Request, principal: Caller) -> dict[str, Any]:
    body = await json_body(request, CreateBatchRequest)
    return await app_services(request).batches.create(body, principal)


@router.get("")
async def list_batches(request: Request, principal: Caller) -> dict[str, Any]:
    page: BatchPage = query_as(request, BatchPage)
    return await app_services(request).batches.list(principal.owner, page)


@router.get("/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return await app_services(request).batches.retrieve(principal.owner, batch_id)


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return await app_services(request).batches.cancel(principal.owner, batch_id)
