"""`GET /v1/usage`: the usage ledger's totals, grouped by day, model, key, user, route,
endpoint or metadata."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from aiservice.api.deps import Principal, app_services, authenticate
from aiservice.services.usage import UsageReports

router = APIRouter(prefix="/v1/usage", tags=["usage"])


async def usage_reports(request: Request) -> UsageReports:
    services = app_services(request)
    return UsageReports(services.usage, services.ledger)


@router.get("")
async def read_usage(
    request: Request,
    principal: Principal = Depends(authenticate),
    reports: UsageReports = Depends(usage_reports),
) -> dict[str, Any]:
    params = request.query_params
    rows = await reports.totals(
        principal,
        since=params.get("since"),
        until=params.get("until"),
        group_by=params.getlist("group_by"),
        user=params.get("user"),
    )
    return {"object": "list", "data": rows}
