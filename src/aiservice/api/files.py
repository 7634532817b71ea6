"""The Files API: upload (multipart), list, retrieve, delete, and read a file's content."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from aiservice.api.deps import Caller, app_services, query_as
from aiservice.errors import InvalidRequest, validation_error
from aiservice.services.files import ExpiresAfter
from aiservice.services.zero_retention import refuse_storage

router = APIRouter(prefix="/v1/files", tags=["files"])


class FileListQuery(BaseModel):
    purpose: str | None = None
    limit: int = Field(default=10_000, ge=1, le=10_000)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


@router.post("")
async def upload_file(request: Request, principal: Caller) -> dict[str, Any]:
    refuse_storage(principal, "File uploads")  # before the upload is read
    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
        return await app_services(request).files.upload(
            principal.owner,
            purpose,
            upload.filename or "upload",
            upload.read,
            _expires_after(form),
        )
    finally:
        await form.close()


def _expires_after(form: Any) -> ExpiresAfter | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    try:
        return ExpiresAfter.model_validate({"anchor": anchor, "seconds": seconds})
    except ValidationError as exc:
        error = validation_error(exc.errors())
        error.param = f"expires_after.{error.param}" if error.param else "expires_after"
        raise error from None


@router.get("")
async def list_files(request: Request, principal: Caller) -> dict[str, Any]:
    query: FileListQuery = query_as(request, FileListQuery)
    return await app_services(request).files.list(
        principal.owner,
        purpose=query.purpose,
        limit=query.limit,
        order=query.order,
        after=query.after,
    )


@router.get("/{file_id}")
async def retrieve_file(file_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return await app_services(request).files.retrieve(principal.owner, file_id)


@router.delete("/{file_id}")
async def delete_file(file_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    return await app_services(request).files.delete(principal.owner, file_id)


@router.get("/{file_id}/content")
async def file_content(file_id: str, request: Request, principal: Caller) -> StreamingResponse:
    row, chunks = await app_services(request).files.content(principal.owner, file_id)
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "content-length": str(row.bytes),
            "content-disposition": f'attachment; filename="{_header_safe(row.filename)}"',
        },
    )


def _header_safe(filename: str) -> str:
    return "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
