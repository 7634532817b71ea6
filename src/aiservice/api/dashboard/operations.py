"""Jobs (/dashboard/jobs: background responses, batches and analyses with their progress,
refreshed in place while any is running) and health (/dashboard/health: readiness, models,
upstream circuits, queue depth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aiservice.api.dashboard.render import page
from aiservice.api.dashboard.session import SignedIn, SignedInAdmin
from aiservice.api.deps import app_services
from aiservice.store.batches import BatchStore
from aiservice.store.jobs import QUEUED, JobStore

router = APIRouter(prefix="/dashboard", include_in_schema=False)
_SHOWN = 20


@router.get("/jobs")
async def jobs_page(request: Request, signed_in: SignedIn) -> Response:
    services = app_services(request)
    jobs = JobStore(services.database)
    owner = None if signed_in.principal.is_admin else signed_in.principal.owner
    batches = [
        await _batch_view(services.database, row) for row in await jobs.batches(owner, _SHOWN)
    ]
    analyses = [_analysis_view(row) for row in await jobs.analyses(owner, _SHOWN)]
    responses = await jobs.background_responses(owner, _SHOWN)
    running = any(job["status"] in QUEUED for job in [*batches, *analyses]) or any(
        row.status in QUEUED for row in responses
    )
    context = {
        "viewer": signed_in,
        "responses": responses,
        "batches": batches,
        "analyses": analyses,
        "running": running,
    }
    # ?part=jobs: the tables alone, which the page's script swaps in while jobs run.
    template = "jobs_tables.html" if request.query_params.get("part") == "jobs" else "jobs.html"
    return page(request, template, context)


@router.get("/health")
async def health_page(request: Request, signed_in: SignedInAdmin) -> Response:
    services = app_services(request)
    circuits = [
        {"name": breaker.name, "state": await breaker.state()}
        for breaker in services.registry.upstream_breakers()
    ]
    models = [
        {"name": served.name, "served_by": served.served_by}
        for served in services.registry.served_models()
    ]
    context = {
        "viewer": signed_in,
        "ready": services.registry.ready,
        "models": models,
        "circuits": circuits,
        "waiting": await JobStore(services.database).waiting(),
    }
    return page(request, "health.html", context)


async def _batch_view(database: Any, row: Any) -> dict[str, Any]:
    counts = row.request_counts
    if counts is None and row.status in QUEUED:
        # Still running: its lines' states now (its own counts are written at the end).
        lines = await BatchStore(database).counts(row.seq)
        counts = {"total": lines.total, "completed": lines.succeeded, "failed": lines.failed}
    return {
        "id": row.id,
        "owner": row.owner,
        "endpoint": row.endpoint,
        "model": row.model,
        "status": row.status,
        "created_at": (row.times or {}).get("created_at"),
        "counts": counts or {},
    }


def _analysis_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "owner": row.owner,
        "name": row.name,
        "model": row.model,
        "status": row.status,
        "stage": row.stage,
        "stages_run": len(row.jobs or []),
        "created_at": row.created_at,
    }
