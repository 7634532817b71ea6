"""The admin API: users and API keys, for admins only (the master key is one).

A caller who is not an admin gets the same 404 as for an unknown URL: the admin API is not
advertised to those who may not use it, and "404, never 403" holds across the whole API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from aiservice.api.deps import Principal, app_services, authenticate, json_body
from aiservice.errors import NotFound
from aiservice.governance.accounts import Accounts, key_view, user_view
from aiservice.settings import LimitValues, SafetyValues


async def admin(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_admin:
        raise NotFound(f"Unknown request URL: {request.method} {request.url.path}")
    return principal


async def accounts(request: Request) -> Accounts:
    return app_services(request).accounts


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])


class _NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    password: str
    is_admin: bool = False


class _NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    name: str = Field(default="default")
    rate_limits: LimitValues | None = None
    safety: SafetyValues | None = None


@router.post("/users", status_code=201)
async def add_user(request: Request, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    body = await json_body(request, _NewUser)
    return user_view(await users.add_user(body.email, body.password, is_admin=body.is_admin))


@router.get("/users")
async def list_users(users: Accounts = Depends(accounts)) -> dict[str, Any]:
    return {"object": "list", "data": [user_view(user) for user in await users.users()]}


@router.post("/users/{email}/disable")
async def disable_user(email: str, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    return user_view(await users.disable_user(email))


@router.post("/keys", status_code=201)
async def create_key(request: Request, users: Accounts = Depends(accounts)) -> dict[str, Any]:
    body = await json_body(request, _NewKey)
    new = await users.create_key(body.email, body.name, body.rate_limits, body.safety)
    assert new.user is not None
    return key_view(new.key, new.user, new.secret)


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
