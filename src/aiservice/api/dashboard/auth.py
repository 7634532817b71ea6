"""Signing in and out of the dashboard: /dashboard/login (an API key, or an e-mail and
password) and /dashboard/logout."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aiservice.api.dashboard.render import LOGIN_PATH, page, redirect
from aiservice.api.dashboard.session import (
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SignedIn,
    new_login_token,
    posted_form,
    set_cookie,
)
from aiservice.api.deps import app_services
from aiservice.errors import AIServiceError

router = APIRouter(prefix="/dashboard", include_in_schema=False)
HOME = "/dashboard/requests"


@router.get("")
async def home() -> Response:
    return redirect(HOME)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request, next_path=_safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await posted_form(request, request.cookies.get(LOGIN_CSRF_COOKIE) or "")
    sessions = app_services(request).dashboard_sessions
    address = request.client.host if request.client else "unknown"
    next_path = _safe_next(fields.get("next"))
    try:
        if fields.get("api_key", "").strip():
            token = await sessions.sign_in_with_key(fields["api_key"], address)
        else:
            email, password = fields.get("email", ""), fields.get("password", "")
            token = await sessions.sign_in_with_password(email, password, address)
    except AIServiceError as refused:  # wrong credentials (401), too many tries (429)
        return _login_page(request, next_path, refused)
    response = redirect(next_path)
    set_cookie(request, response, SESSION_COOKIE, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request, signed_in: SignedIn) -> Response:
    await posted_form(request, signed_in.csrf_token)
    await app_services(request).dashboard_sessions.sign_out(request.cookies.get(SESSION_COOKIE))
    response = redirect("/dashboard/login")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _login_page(
    request: Request, next_path: str, refused: AIServiceError | None = None
) -> Response:
    token = new_login_token()
    context = {"csrf_token": token, "next": next_path, "error": refused, "viewer": None}
    status = refused.status_code if refused is not None else 200
    response = page(request, "login.html", context, status_code=status)
    if refused is not None:
        response.headers.update(refused.headers)  # Retry-After
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


def _safe_next(path: str | None) -> str:
    """Only a dashboard page of this server: never an address elsewhere (`//evil`)."""
    inside = path is not None and path.startswith("/dashboard/")
    if inside and not path.startswith(LOGIN_PATH) and "//" not in path and "\\" not in path:
        return path
    return HOME
