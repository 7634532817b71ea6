"""Who reads a dashboard page: the session cookie, its viewer, and the CSRF check of every
form posted."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from aiservice.api.deps import app_services
from aiservice.errors import AuthenticationFailed, PermissionDenied
from aiservice.governance.dashboard_sessions import Viewer, csrf_matches

SESSION_COOKIE = "aiservice_session"
# Before sign-in there is no session: the form's token is checked against this cookie.
LOGIN_CSRF_COOKIE = "aiservice_login_csrf"
COOKIE_PATH = "/dashboard"


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer; signed out, the page answers with the sign-in form."""
    sessions = app_services(request).dashboard_sessions
    found = await sessions.viewer(request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise AuthenticationFailed("Sign in to see the dashboard.")
    request.state.viewer = found
    return found


async def admin_viewer(found: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    if not found.principal.is_admin:
        raise PermissionDenied("Only administrators can do this.")
    return found


SignedIn = Annotated[Viewer, Depends(viewer)]
SignedInAdmin = Annotated[Viewer, Depends(admin_viewer)]


async def posted_form(request: Request, expected_token: str) -> dict[str, str]:
    """The form's fields, once its CSRF token is the one expected (else 403)."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if not csrf_matches(expected_token, fields.get("csrf_token")):
        raise PermissionDenied(
            "This form has expired or did not come from this dashboard. Reload the page and "
            "try again.",
            code="csrf_token_invalid",
        )
    return fields


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    # Secure whenever the browser reached us over TLS (directly or through a trusted proxy).
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax" if name == SESSION_COOKIE else "strict",
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
