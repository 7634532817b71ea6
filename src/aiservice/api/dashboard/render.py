"""Rendering the dashboard's pages: one Jinja environment (templates shipped in the package,
autoescaped), the filters the templates format numbers and times with, and the headers every
page goes out with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from aiservice.errors import AIServiceError

# Nothing is fetched from elsewhere: scripts and styles only from this server, no inline
# script (so an injected one would not run), no framing by other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOGIN_PATH = "/dashboard/login"


def _when(value: float | int | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.6f}" if value < 0.01 else f"${value:,.2f}"


def _number(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _text(content: Any) -> str:
    """A message's content as text: a string as it is, parts joined (non-text ones named)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict):
                texts.append(part.get("text") or f"[{part.get('type', 'part')}]")
            else:
                texts.append(str(part))
        return "\n".join(texts)
    return str(content)


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("aiservice.api.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=_when, usd=_usd, number=_number, query=urlencode, text=_text)
    return environment


_TEMPLATES = _environment()


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """The page `template` rendered with `context` (which carries the viewer, if any)."""
    body = _TEMPLATES.get_template(template).render(request_path=request.url.path, **context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(location: str) -> RedirectResponse:
    # 303: the browser follows a form's POST with a GET.
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def error_page(request: Request, error: AIServiceError) -> Response:
    """An error on a dashboard page, as a page: signed out goes to the sign-in form."""
    if error.status_code == 401:
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"{LOGIN_PATH}?{urlencode({'next': asked})}")
    context = {"error": error, "viewer": getattr(request.state, "viewer", None)}
    return page(request, "error.html", context, status_code=error.status_code)
