"""Liveness and readiness: no authentication, no I/O."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from aiservice.api.deps import registry
from aiservice.providers.registry import ModelRegistry

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(models: ModelRegistry = Depends(registry)) -> JSONResponse:
    if models.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "loading"}, status_code=503)
