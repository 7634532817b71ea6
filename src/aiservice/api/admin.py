"""The admin API: users and API keys, for admins only (the master key is one).

A caller who is not an admin gets the same 404 as for an unknown URL: the admin API is not
advertised to those who may not use it, and "404, never 403" holds across the whole API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from aiservice.api.deps import Principal, app_services, authenticate, json_body
from aiservice.errors import NotFound
from aiservice.governance.accounts import Accounts, key_view, user_view
from aiservice.governance.audit import Actor, acting_as
from aiservice.governance.durations import DEFAULT_GRACE, parse_duration
from aiservice.observability.logging import request_id_var
from aiservice.settings import LimitValues, SafetyValues


async def admin(
    request: Request, principal: Principal = Depends(authenticate)
) -> AsyncIterator[Principal]:
    """Admins only; what the request changes is audited as done by this admin (their user id,
    or "admin" for the master key) under the request's id. A dependency with `yield`, so that
    the actor is set in the handler's context for the whole request and reset after."""
    if not principal.is_admin:
        raise NotFound(f"Unknown request URL: {request.method} {request.url.path}")
    with acting_as(Actor(principal.owner, request_id_var.get())):
        yield principal


async def accounts(request: Request) -> Accounts:
    return app_services(request).accounts


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])


class _NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    password: str
    is_admin: bool = False
    zero_retention: bool = False


class _NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    name: str = Field(default="default")
    rate_limits: LimitValues | None = None
    safety: SafetyValues | None = None
    # Seconds, or a duration such as "90d", "24h", "30m", "3600s"; None: the key never expires.
    expires_in: StrictInt | str | None = None
    zero_retention: bool = False


class _Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How long the rotated key keeps working beside its successor; 0: it stops at once.
    grace: StrictInt | str = DEFAULT_GRACE


class _Switch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


@router.post("/users", status_code=201)
async def add_user(request: Request, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    body = await json_body(request, _NewUser)
    user = await users.add_user(
        body.email, body.password, is_admin=body.is_admin, zero_retention=body.zero_retention
    )
    return user_view(user)


@router.get("/users")
async def list_users(users: Accounts = Depends(accounts)) -> dict[str, Any]:
    return {"object": "list", "data": [user_view(user) for user in await users.users()]}


@router.post("/users/{email}/disable")
async def disable_user(email: str, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    return user_view(await users.disable_user(email))


@router.post("/keys", status_code=201)
async def create_key(request: Request, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    body = await json_body(request, _NewKey)
    expires_in_s = (
        parse_duration(body.expires_in, param="expires_in") if body.expires_in is not None else None
    )
    new = await users.create_key(
        body.email,
        body.name,
        body.rate_limits,
        body.safety,
        expires_in_s=expires_in_s,
        zero_retention=body.zero_retention,
    )
    assert new.user is not None
    return key_view(new.key, new.user, new.secret)


@router.post("/keys/{key_id}/rotate", status_code=201)
async def rotate_key(
    key_id: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    """The successor, its secret shown once, and the rotated key (`rotated_key`)."""
    body = await json_body(request, _Rotation) if await request.body() else _Rotation()
    grace_s = parse_duration(body.grace, param="grace", allow_zero=True)
    new, rotated = await users.rotate_key(key_id, grace_s)
    assert new.user is not None
    await app_services(request).budgets.copy_key_budget(key_id, new.key.id)
    return key_view(new.key, new.user, new.secret) | {"rotated_key": key_view(rotated, new.user)}


# Zero data retention of a key or a user (all their keys): nothing stored but usage counts.
@router.put("/keys/{key_id}/zero_retention")
async def set_key_zero_retention(
    key_id: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    switch = await json_body(request, _Switch)
    return key_view(*await users.set_key_zero_retention(key_id, switch.enabled))


@router.put("/users/{email}/zero_retention")
async def set_user_zero_retention(
    email: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    switch = await json_body(request, _Switch)
    return user_view(await users.set_user_zero_retention(email, switch.enabled))


@router.get("/keys")
async def list_keys(
    email: str | None = None, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    return {"object": "list", "data": [key_view(k, u) for k, u in await users.keys(email)]}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    return key_view(*await users.revoke_key(key_id))


# Rate limits: a key's or a user's own values over the configured defaults, field by field;
# an empty object puts them back on the defaults.
@router.put("/keys/{key_id}/rate_limits")
async def set_key_limits(
    key_id: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    limits = await json_body(request, LimitValues)
    return key_view(*await users.set_key_limits(key_id, limits))


@router.put("/users/{email}/rate_limits")
async def set_user_limits(
    email: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    limits = await json_body(request, LimitValues)
    return user_view(await users.set_user_limits(email, limits))


# Content policy: a key's or a user's own moderation and PII modes over the configured ones;
# an empty object drops them. A client's request may ask for more, never for less.
@router.put("/keys/{key_id}/safety")
async def set_key_safety(
    key_id: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    safety = await json_body(request, SafetyValues)
    return key_view(*await users.set_key_safety(key_id, safety))


@router.put("/users/{email}/safety")
async def set_user_safety(
    email: str, request: Request, users: Accounts = Depends(accounts)
) -> dict[str, Any]:
    safety = await json_body(request, SafetyValues)
    return user_view(await users.set_user_safety(email, safety))


@router.get("/ratelimits")
async def rate_limit_stats(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": await app_services(request).admission.stats()}
