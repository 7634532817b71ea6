"""The exception hierarchy and the one translator into OpenAI's error envelope."""

from __future__ import annotations

from typing import Any


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


def as_service_error(exc: BaseException) -> AIServiceError:
    """Map any exception to the error the client sees; unknown ones become a bare 500."""
    return exc if isinstance(exc, AIServiceError) else InternalError()
