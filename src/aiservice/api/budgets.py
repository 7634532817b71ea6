"""The admin API for budgets and their alerts; admins only, like the rest of /v1/admin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from aiservice.api.admin import admin
from aiservice.api.deps import app_services, json_body, query_as
from aiservice.governance.budgets import Budgets

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])


async def budgets(request: Request) -> Budgets:
    return app_services(request).budgets


class _NewBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user: str | None = None  # an e-mail or a user id
    key: str | None = None  # a key id
    amount_usd: float
    period: str = "month"
    soft: bool = False


@router.post("/budgets", status_code=201)
async def set_budget(request: Request, service: Budgets = Depends(budgets)) -> dict[str, Any]:
    body = await json_body(request, _NewBudget)
    return await service.view(await service.put(**body.model_dump()))


@router.get("/budgets")
async def list_budgets(service: Budgets = Depends(budgets)) -> dict[str, Any]:
    views = [await service.view(budget) for budget in await service.budgets()]
    return {"object": "list", "data": views}


@router.delete("/budgets/{budget_id}")
async def delete_budget(budget_id: str, service: Budgets = Depends(budgets)) -> dict[str, Any]:
    budget = await service.delete(budget_id)
    return {"object": "budget.deleted", "id": budget.id, "deleted": True}


class _AlertQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)


@router.get("/alerts")
async def list_alerts(request: Request, service: Budgets = Depends(budgets)) -> dict[str, Any]:
    query: _AlertQuery = query_as(request, _AlertQuery)
    return {"object": "list", "data": await service.alerts(query.limit)}
