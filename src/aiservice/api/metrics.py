"""GET /metrics: Prometheus text exposition. No authentication, as Prometheus scrapes: the labels
carry no tenant data (see docs/operations.md); `metrics_enabled = false` removes the route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aiservice.api.deps import app_services
from aiservice.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = app_services(request)
    text = await services.metrics.render(
        services.registry.upstream_breakers(), services.response_store.count_queued
    )
    return Response(text, media_type=CONTENT_TYPE)
