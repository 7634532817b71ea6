"""The privacy routes of the admin API: export and erase everything held about one data
subject, and follow an erasure. Admins only (a 404 to anyone else, like all of /v1/admin);
erasing takes no confirmation field: being an admin is the confirmation, and there is no undo.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from aiservice.api.admin import admin
from aiservice.api.deps import app_services, json_body
from aiservice.errors import NotFound
from aiservice.observability.logging import request_id_var
from aiservice.services.privacy import erasure_object
from aiservice.services.privacy_export import PrivacyExport
from aiservice.services.privacy_subject import PrivacyRequest

router = APIRouter(prefix="/v1/admin/privacy", tags=["admin"], dependencies=[Depends(admin)])


@router.post("/export")
async def export_subject(request: Request) -> StreamingResponse:
    services = app_services(request)
    subject = await services.erasures.subject(await json_body(request, PrivacyRequest))
    export = PrivacyExport(services.database, subject)
    await services.audit.record("privacy.export", export.id, {"subject": subject.label})
    return StreamingResponse(
        export.lines(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{export.id}.ndjson"'},
    )


@router.post("/erase")
async def erase_subject(request: Request) -> dict[str, Any]:
    body = await json_body(request, PrivacyRequest)
    return await app_services(request).erasures.start(body, request_id_var.get())


@router.get("/erasures/{erasure_id}")
async def get_erasure(erasure_id: str, request: Request) -> dict[str, Any]:
    row = await app_services(request).erasures.get(erasure_id)
    if row is None:
        raise NotFound(f"No erasure {erasure_id}.")
    return erasure_object(row)
