"""Document analysis over HTTP: `POST /api/ai/documents/analyses` (a multipart `file`, or JSON
`{"text"}`), `GET …/{id}` (progress, then the report), `DELETE …/{id}` (cancel). Basic or
Bearer auth, and the seed's error shape, as on the other `/api/ai` routes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from aiservice.api.deps import Caller, app_services, json_body
from aiservice.api.error_handlers import SEED_PREFIX
from aiservice.errors import InvalidRequest, validation_error
from aiservice.services.metadata import Metadata

ANALYSES_PATH = f"{SEED_PREFIX}/documents/analyses"
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # the readers' own bound (aiservice.documents)
DEFAULT_MODEL = "gpt-4o-mini"

router = APIRouter(prefix=ANALYSES_PATH, tags=["documents"])


class AnalysisOptions(BaseModel):
    """What may come with the document (JSON body, or multipart fields)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    chunk_tokens: int | None = Field(default=None, ge=256, le=100_000)
    metadata: Metadata | None = None


class TextAnalysis(AnalysisOptions):
    text: str = Field(min_length=1, max_length=2_000_000)
    name: str = Field(default="text", min_length=1, max_length=512)


@router.post("")
async def create_analysis(request: Request, principal: Caller) -> dict[str, Any]:
    services = app_services(request)
    await services.budgets.check(principal)
    from aiservice.documents import DocumentError, document_from_text

    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        document, options = await _uploaded(request)
    else:
        body = await json_body(request, TextAnalysis)
        try:  # a text with nothing to read (blank, control characters) is refused, as a file is
            document, options = document_from_text(body.text, body.name), body
        except DocumentError as exc:
            raise InvalidRequest(str(exc), param="text", code="unreadable_document") from None
    return await services.analyses.create(
        document,
        options.model,
        principal,
        metadata=options.metadata,
        chunk_tokens=options.chunk_tokens,
    )


async def _uploaded(request: Request) -> tuple[Any, AnalysisOptions]:
    from aiservice.documents import DocumentError, read_document_bytes

    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        try:
            options = AnalysisOptions.model_validate(fields)
        except ValidationError as exc:
            raise validation_error(exc.errors()) from None
        data = await upload.read(MAX_DOCUMENT_BYTES + 1)
        name = upload.filename or "upload.txt"
        try:
            document = await asyncio.to_thread(read_document_bytes, data, name)
        except DocumentError as exc:
            raise InvalidRequest(str(exc), param="file", code="unreadable_document") from None
        return document, options
    finally:
        await form.close()


@router.get("/{analysis_id}")
async def retrieve_analysis(
    analysis_id: str, request: Request, principal: Caller
) -> dict[str, Any]:
    return await app_services(request).analyses.retrieve(principal.owner, analysis_id)


@router.delete("/{analysis_id}")
async def cancel_analysis(analysis_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return await app_services(request).analyses.cancel(principal.owner, analysis_id)
