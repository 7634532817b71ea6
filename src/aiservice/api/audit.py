"""The audit log over HTTP: GET /v1/admin/audit lists what admins did, newest first. Admins
only (a 404 to anyone else, like all of /v1/admin); reading it is not itself audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from aiservice.api.admin import admin
from aiservice.api.deps import app_services, query_as
from aiservice.store.audit import AuditQuery

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])


class _AuditFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    # Unix seconds, inclusive; at most the databases' largest integer (beyond it: a 400).
    since: int | None = Field(default=None, ge=0, le=2**63 - 1)
    until: int | None = Field(default=None, ge=0, le=2**63 - 1)
    after: str | None = None  # an entry's id
    limit: int = Field(default=20, ge=1, le=100)


@router.get("/audit")
async def list_audit_entries(request: Request) -> dict[str, Any]:
    query: _AuditFilter = query_as(request, _AuditFilter)
    return await app_services(request).audit.entries(AuditQuery(**query.model_dump()))
