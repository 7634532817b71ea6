"""Every error leaves the API in OpenAI's envelope — or, under `/api/ai`, the e-mail manager's
`{"success": false, "error": …}`. What the error is comes from `aiservice.errors` (the
translators the facade uses too); these handlers only pick the shape by path and answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiservice.api.dashboard.render import error_page
from aiservice.errors import AIServiceError, http_error, validation_error
from aiservice.metering.meter import current_meter
from aiservice.services.seed_format import error_result

log = logging.getLogger(__name__)

DASHBOARD_PREFIX = "/dashboard"  # the web pages: errors as pages
SEED_PREFIX = "/api/ai"  # the e-mail manager's routes (seed 000): errors in its own shape
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="aiservice"'}


def is_seed_path(path: str) -> bool:
    return path == SEED_PREFIX or path.startswith(SEED_PREFIX + "/")


def error_body(error: AIServiceError, path: str) -> dict[str, Any]:
    """The error as the route at `path` speaks it."""
    return error_result(error) if is_seed_path(path) else error.envelope()


def error_response(error: AIServiceError, path: str = "") -> JSONResponse:
    meter = current_meter()
    if meter is not None and meter.error is None:
        meter.error = error  # the usage record's error code
    if not is_seed_path(path):
        return JSONResponse(error.envelope(), status_code=error.status_code, headers=error.headers)
    # Basic auth is what the seed's clients (curl -u, browsers) use: tell them to send it.
    challenge = _BASIC_CHALLENGE if error.status_code == 401 else {}
    headers = {**error.headers, **challenge}
    return JSONResponse(error_result(error), status_code=error.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    for exception_class, handler in _HANDLERS.items():
        app.add_exception_handler(exception_class, handler)  # type: ignore[arg-type]
    # Anything else is a fault of ours, answered by RequestContextMiddleware (with the id).


def handler_for(exc: Exception) -> ErrorHandler | None:
    """The handler FastAPI would call for `exc` (looked up the way Starlette does, by the
    exception's classes in order); None for a fault of ours. For the routes served before
    FastAPI's router (hot_routes), so that they answer errors exactly as it does."""
    for exception_class in type(exc).__mro__:
        if exception_class in _HANDLERS:
            return _HANDLERS[exception_class]
    return None


def _answer(request: Request, error: AIServiceError) -> Response:
    path = request.url.path
    if path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/"):
        return error_page(request, error)  # a page for a person, not JSON for a client
    return error_response(error, path)


async def _on_service_error(request: Request, exc: AIServiceError) -> Response:
    return _answer(request, exc)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    return _answer(request, validation_error(exc.errors()))


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return _answer(
        request, http_error(exc.status_code, str(exc.detail), request.method, request.url.path)
    )


ErrorHandler = Callable[[Request, Any], Awaitable[Response]]
_HANDLERS: dict[type[Exception], ErrorHandler] = {
    AIServiceError: _on_service_error,
    RequestValidationError: _on_validation_error,
    StarletteHTTPException: _on_http_error,
}
