"""POST /v1/moderations: classify text for OpenAI's 13 categories."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aiservice.api.deps import app_services, model_request
from aiservice.services.moderation_request import ModerationRequest

router = APIRouter(prefix="/v1", tags=["moderations"])


@router.post("/moderations")
async def create_moderation(request: Request) -> JSONResponse:
    _, body = await model_request(request, ModerationRequest)
    return JSONResponse(await app_services(request).moderations.create(body))
