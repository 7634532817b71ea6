"""Budgets (/dashboard/budgets) and keys (/dashboard/keys): a user sees their own, an admin
everyone's and can create keys (the secret shown once), revoke them and set their limits."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aiservice.api.dashboard.render import page, redirect
from aiservice.api.dashboard.session import SignedIn, SignedInAdmin, posted_form
from aiservice.api.deps import app_services
from aiservice.errors import InvalidRequest
from aiservice.governance.accounts import Principal, key_view
from aiservice.governance.audit import Actor, acting_as
from aiservice.governance.durations import parse_duration
from aiservice.observability.logging import request_id_var
from aiservice.services.usage import UsageReports
from aiservice.settings import LimitValues

router = APIRouter(prefix="/dashboard", include_in_schema=False)
LIMIT_FIELDS = ("rpm", "rpd", "tpm", "tpd")


@router.get("/budgets")
async def budgets_page(request: Request, signed_in: SignedIn) -> Response:
    services = app_services(request)
    principal = signed_in.principal
    own_keys = await _own_key_ids(request, principal)
    shown = [
        budget
        for budget in await services.budgets.budgets()
        if principal.is_admin
        or (budget.scope, budget.subject_id) == ("user", principal.owner)
        or (budget.scope == "key" and budget.subject_id in own_keys)
    ]
    views = [await services.budgets.view(budget) for budget in shown]
    ids = {budget.id for budget in shown}
    alerts = [alert for alert in await services.budgets.alerts(200) if alert["budget_id"] in ids]
    context = {"viewer": signed_in, "budgets": views, "alerts": alerts}
    return page(request, "budgets.html", context)


@router.get("/keys")
async def keys_page(request: Request, signed_in: SignedIn) -> Response:
    return await _keys_page(request, signed_in)


@router.post("/keys")
async def create_key(request: Request, signed_in: SignedInAdmin) -> Response:
    fields = await posted_form(request, signed_in.csrf_token)
    expires = fields.get("expires", "").strip()
    with _audited_as(signed_in.principal):
        created = await app_services(request).accounts.create_key(
            fields.get("email", ""),
            fields.get("name", "").strip() or "default",
            _limits(fields),
            expires_in_s=parse_duration(expires, param="expires") if expires else None,
        )
    # Rendered at once rather than redirected to: the secret is shown this once only.
    created_view = key_view(created.key, created.user, created.secret) if created.user else None
    return await _keys_page(request, signed_in, created=created_view)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, signed_in: SignedInAdmin) -> Response:
    await posted_form(request, signed_in.csrf_token)
    with _audited_as(signed_in.principal):
        await app_services(request).accounts.revoke_key(key_id)
    return redirect("/dashboard/keys")


@router.post("/keys/{key_id}/limits")
async def set_limits(request: Request, key_id: str, signed_in: SignedInAdmin) -> Response:
    fields = await posted_form(request, signed_in.csrf_token)
    with _audited_as(signed_in.principal):
        await app_services(request).accounts.set_key_limits(key_id, _limits(fields))
    return redirect("/dashboard/keys")


async def _keys_page(
    request: Request, signed_in: SignedIn, created: dict[str, Any] | None = None
) -> Response:
    services = app_services(request)
    principal = signed_in.principal
    found = await services.accounts.keys(None if principal.is_admin else principal.email)
    reports = UsageReports(services.usage, services.ledger)
    day = await reports.totals(principal, since=str(time.time() - 86400), group_by=["key"])
    # The limiter's own counts (admitted, refused, queued), shared through Redis when set.
    limited = {stats["subject"]: stats for stats in await services.admission.stats()}
    context = {
        "viewer": signed_in,
        "keys": [key_view(key, user) for key, user in found],
        "day_usage": {row["key"]: row for row in day},
        "limiter": limited,
        "created": created,
        "limit_fields": LIMIT_FIELDS,
        "now": time.time(),
    }
    return page(request, "keys.html", context)


async def _own_key_ids(request: Request, principal: Principal) -> set[str]:
    if principal.is_admin or principal.email is None:
        return set()
    return {key.id for key, _ in await app_services(request).accounts.keys(principal.email)}


def _limits(fields: dict[str, str]) -> LimitValues | None:
    values: dict[str, int] = {}
    for name in LIMIT_FIELDS:
        text = fields.get(name, "").strip()
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise InvalidRequest(f"{name} must be a whole number above 0.", param=name)
        values[name] = int(text)
    return LimitValues(**values) if values else None


def _audited_as(principal: Principal) -> Any:
    return acting_as(Actor(principal.owner, request_id_var.get()))
