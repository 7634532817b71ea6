"""The request log (/dashboard/requests) and one request (/dashboard/requests/{id}), with
its re-label form."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aiservice.api.dashboard.render import page, redirect
from aiservice.api.dashboard.session import SignedIn, posted_form
from aiservice.api.deps import app_services
from aiservice.errors import InvalidRequest
from aiservice.services.request_log import (
    STATUSES,
    RequestLog,
    encode_cursor,
    parse_filter,
)
from aiservice.store.request_log import COMPLETION, RESPONSE, RequestLogStore

router = APIRouter(prefix="/dashboard/requests", include_in_schema=False)


def request_log(request: Request) -> RequestLog:
    services = app_services(request)
    store = RequestLogStore(services.database)
    return RequestLog(store, services.usage, services.stored_completions)


@router.get("")
async def log_page(request: Request, signed_in: SignedIn) -> Response:
    log_filter = parse_filter(dict(request.query_params))
    found = await request_log(request).page(signed_in.principal, log_filter)
    next_params = (
        log_filter.as_params(after=encode_cursor(found.next)) if found.next is not None else None
    )
    context = {
        "viewer": signed_in,
        "filter": log_filter,
        "rows": found.rows,
        "next_params": next_params,
        "first_params": log_filter.as_params(after=None) if log_filter.after else None,
        "statuses": STATUSES,
        "kinds": (COMPLETION, RESPONSE),
    }
    return page(request, "requests.html", context)


@router.post("")
async def filter_log(request: Request, signed_in: SignedIn) -> Response:
    """The filter form: posted with its CSRF token (which must stay out of the address), then
    the log at the address that holds the filters, so that it can be kept and shared."""
    fields = await posted_form(request, signed_in.csrf_token)
    log_filter = parse_filter(fields)
    return redirect(f"/dashboard/requests?{urlencode(log_filter.as_params(after=None))}")


@router.get("/{request_id}")
async def request_page(request: Request, request_id: str, signed_in: SignedIn) -> Response:
    view = await request_log(request).request(signed_in.principal, request_id)
    context = {"viewer": signed_in, "view": view, "saved": request.query_params.get("saved")}
    return page(request, "request.html", context)


@router.post("/{request_id}/metadata")
async def relabel(request: Request, request_id: str, signed_in: SignedIn) -> Response:
    fields = await posted_form(request, signed_in.csrf_token)
    metadata = _metadata_from(fields)
    await request_log(request).relabel(signed_in.principal, request_id, metadata)
    return redirect(f"/dashboard/requests/{request_id}?saved=1")


def _metadata_from(fields: dict[str, str]) -> dict[str, str]:
    """The form's rows of key and value (`key_0`, `value_0`, …); an empty key drops its row."""
    metadata: dict[str, str] = {}
    for index in range(64):
        key = fields.get(f"key_{index}", "").strip()
        if key:
            metadata[key] = fields.get(f"value_{index}", "")
    if len(metadata) > 16:
        raise InvalidRequest("A request holds 16 metadata pairs at most.", param="metadata")
    return metadata
