"""The exception hierarchy and the translators into it: whatever goes wrong (a service's
refusal, a body that does not validate, an HTTP-level refusal, a fault of ours) becomes one
`AIServiceError`, and `AIServiceError.envelope()` is OpenAI's error envelope. The HTTP routes
and the Python facade both translate here; `services.seed_format.error_result` is the other
shape, the e-mail manager's `{"success": false}`."""

from __future__ import annotations

import re
from typing import Any

_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Pydantic names the branch of a union it tried in the error location; those are not fields.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
# What a union branch says when the value is not of its type at all (so not the branch meant).
_TYPE_MISMATCHES = {
    "string_type",
    "list_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "int_type",
    "int_parsing",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "literal_error",
    "none_required",
    "is_instance_of",
    "enum",
    "tuple_type",
    "set_type",
}


class AIServiceError(Exception):
    """Base of every error a client may see; carries OpenAI's envelope fields."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = {}  # sent with the error response (e.g. Retry-After)

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(AIServiceError):
    """The request cannot be served as written (400)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    """The prompt (plus the requested completion) does not fit the model's context."""

    default_code = "context_length_exceeded"
    prompt_tokens: int | None = None  # what the prompt counted, when the provider knows
    max_prompt_tokens: int | None = None  # the most it may count, when the provider knows


class ContentPolicyViolation(InvalidRequest):
    """Moderation in `block` mode flagged the request's input; no model work was done."""

    default_code = "content_policy_violation"


class AuthenticationFailed(AIServiceError):
    """No API key, or one we do not know (401)."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(AIServiceError):
    """The object does not exist, or not for this caller (404)."""

    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    """No configured model answers to this name."""

    default_code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class PermissionDenied(AIServiceError):
    """Known caller, refused action: a form without its CSRF token, a user at an admin's (403)."""

    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"


class MethodNotAllowed(AIServiceError):
    status_code = 405
    error_type = "invalid_request_error"


class RequestTooLarge(AIServiceError):
    """The body is over the configured size limit (413)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class ServiceUnavailable(AIServiceError):
    """The model is not loaded yet, or is shutting down (503)."""

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    """An upstream did not answer usably after its retries, or its circuit is open (503):
    the moment to try a fallback model."""

    default_code = "upstream_unavailable"


class UpstreamRefused(AIServiceError):
    """An upstream refused the request for a reason that is ours, not the client's (502):
    its key, an unknown upstream model. Never retried; the message names no secret."""

    status_code = 502
    error_type = "server_error"
    default_code = "upstream_error"


class BudgetExceeded(AIServiceError):
    """The caller's user or key has spent its budget for the period (429); Retry-After says
    when the period resets (none for a `total` budget)."""

    status_code = 429
    error_type = "insufficient_quota"
    default_code = "budget_exceeded"


class InternalError(AIServiceError):
    """Anything unexpected: the message never carries the exception's own text."""

    def __init__(self) -> None:
        super().__init__("The server had an error while processing your request.")


class UnknownParameter(ValueError):
    """Raised inside validation for a request argument we do not know."""

    def __init__(self, name: str):
        super().__init__(f"Unrecognized request argument supplied: {name}")
        self.param = name


class ParameterConflict(ValueError):
    """Raised inside validation for arguments that cannot go together, naming the culprit."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def as_service_error(exc: BaseException) -> AIServiceError:
    """Map any exception to the error the client sees; unknown ones become a bare 500."""
    return exc if isinstance(exc, AIServiceError) else InternalError()


def array_too_long(param: str, max_length: int, length: int) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length "
        f"{max_length}, but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )


def http_error(status_code: int, detail: str, method: str, path: str) -> AIServiceError:
    """A refusal raised by the web framework itself (no route, wrong method, body too big)."""
    if status_code == 404:
        return NotFound(f"Unknown request URL: {method} {path}")
    if status_code == 405:
        return MethodNotAllowed(f"Method {method} is not allowed on {path}.")
    if status_code == 413:
        return RequestTooLarge(detail)
    error = InvalidRequest(detail)
    error.status_code = status_code
    return error


def validation_error(errors: Any) -> InvalidRequest:
    """The first validation problem (pydantic's `errors()`) as a 400, with `param` pointing
    at the offending field."""
    errors = _meant_branch_first(list(errors))
    first = next(iter(errors), None)
    if first is None:
        return InvalidRequest("Invalid request.")
    too_long = next((e for e in errors if e.get("type") == "too_long"), None)
    if too_long is not None:  # before a union's other branches' complaints about the type
        limits = too_long.get("ctx") or {}
        param = _param(too_long.get("loc", ())) or "body"
        return array_too_long(param, limits.get("max_length"), limits.get("actual_length"))
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
    if _wrong_branch(first):  # no branch fits the value: name them all
        message = _every_branch(errors, param, message)
    if param is None:
        return InvalidRequest(message)
    if first.get("type") == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)


def _meant_branch_first(errors: list[Any]) -> list[Any]:
    """For a union field (`str | list[...]`, a literal or an object, ...), pydantic reports
    every branch it tried, the one the input meant among them: a list's bad item is listed
    after "should be a valid string". A branch whose only complaint is that the value is not
    of its type is not the one meant, so the other errors come first."""
    meant = [error for error in errors if not _wrong_branch(error)]
    return meant + [error for error in errors if _wrong_branch(error)]


def _every_branch(errors: list[Any], param: str | None, message: str) -> str:
    """'Input should be a valid string or a valid list': what each branch of a union at
    `param` wanted, when the value fits none of them."""
    wanted = [message]
    for error in errors[1:]:
        if _wrong_branch(error) and _param(error.get("loc", ())) == param:
            other = str(error.get("msg", "")).removeprefix("Input should be ")
            if error.get("type") in ("model_type", "model_attributes_type", "dict_type"):
                other = "an object"  # not pydantic's class name
            if other and other not in wanted:
                wanted.append(other)
    return " or ".join(wanted)


def _wrong_branch(error: Any) -> bool:
    location = error.get("loc", ())
    return error.get("type") in _TYPE_MISMATCHES and bool(location) and _is_branch_tag(location[-1])


def _is_branch_tag(part: Any) -> bool:
    return isinstance(part, str) and (not _FIELD_NAME.match(part) or part in _TYPE_TAGS)


def _param(location: tuple[Any, ...]) -> str | None:
    path = ""
    for part in location[1:] if location[:1] == ("body",) else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _is_branch_tag(part):
            path += f".{part}" if path else part
    return path or None
