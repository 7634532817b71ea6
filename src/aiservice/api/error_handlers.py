"""Every error leaves the API in OpenAI's envelope — or, under `/api/ai`, the e-mail manager's
`{"success": false, "error": …}` — and these handlers are the only translators."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiservice.errors import (
    AIServiceError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
)
from aiservice.metering.meter import current_meter
from aiservice.services.chat_request import ParameterConflict, UnknownParameter
from aiservice.services.request_limits import array_too_long
from aiservice.services.seed_format import error_result

log = logging.getLogger(__name__)

_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Pydantic names the branch of a union it tried in the error location; those are not fields.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


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


async def _on_service_error(request: Request, exc: AIServiceError) -> JSONResponse:
    return error_response(exc, request.url.path)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(validation_error(exc.errors()), request.url.path)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        error: AIServiceError = NotFound(
            f"Unknown request URL: {request.method} {request.url.path}"
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
    elif exc.status_code == 413:
        error = RequestTooLarge(str(exc.detail))
    else:
        error = InvalidRequest(str(exc.detail))
        error.status_code = exc.status_code
    return error_response(error, request.url.path)


ErrorHandler = Callable[[Request, Any], Awaitable[JSONResponse]]
_HANDLERS: dict[type[Exception], ErrorHandler] = {
    AIServiceError: _on_service_error,
    RequestValidationError: _on_validation_error,
    StarletteHTTPException: _on_http_error,
}


def validation_error(errors: Any) -> InvalidRequest:
    """The first validation problem as a 400, with `param` pointing at the offending field."""
    first = next(iter(errors), None)
    if first is None:
        return InvalidRequest("Invalid request.")
    too_long = next((e for e in errors if e.get("type") == "too_long"), None)
    if too_long is not None:  # before a union's other branches' complaints about the type
        return _array_too_long(too_long)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, UnknownParameter | ParameterConflict):
        return InvalidRequest(str(cause), param=cause.param)
    if first.get("type") == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
        )
    param = _param(first.get("loc", ()))
    if first.get("type") == "missing" and param is None:
        return InvalidRequest("The request needs a JSON body.")
    message = str(first.get("msg", "Invalid value")).removeprefix("Value error, ")
    if param is None:
        return InvalidRequest(message)
    if first.get("type") == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)


def _array_too_long(error: Any) -> InvalidRequest:
    limits = error.get("ctx") or {}
    return array_too_long(
        _param(error.get("loc", ())) or "body",
        limits.get("max_length"),
        limits.get("actual_length"),
    )


def _param(location: tuple[Any, ...]) -> str | None:
    path = ""
    for part in location[1:] if location[:1] == ("body",) else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _FIELD_NAME.match(part) and part not in _TYPE_TAGS:
            path += f".{part}" if path else part
    return path or None
