"""What every fake answer shares: the deterministic reply, word counts and the error envelope.

Bodies are plain dicts shaped like the official `openai` types (the tests validate them against
those types and OpenAI's OpenAPI schemas): building pydantic objects per request would cost more
than everything else the fake does, and it has to keep up with benchmarks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
# A configured reply: fixed text, or text made from the request's JSON body.
ReplySource = str | Callable[[Body], str] | None

DEFAULT_REPLY_PREFIX = "Fake reply to: "
JSON_REPLY = "{}"
FINGERPRINT = "fp_fake_upstream"
# One streamed token: a word with the whitespace before it (and, for the last, after it), so
# that the tokens always join back into the exact reply.
_TOKEN = re.compile(r"\s*\S+(?:\s+$)?")


def tokens_of(text: str) -> list[str]:
    """The reply cut into words, each with its leading whitespace: what one chunk carries."""
    return _TOKEN.findall(text) or ([text] if text else [])


def word_count(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the `text` of each part of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


@dataclass(slots=True)
class Reply:
    """What one request is answered with; every choice gets the same."""

    tokens: list[str]  # what is produced, after any max_tokens cut
    truncated: bool  # the cut removed words: finish_reason "length" / status "incomplete"
    prompt_tokens: int
    tool_name: str | None = None  # a forced tool call of this function instead of text

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


def reply_text(configured: ReplySource, override: str | None, body: Body, default: str) -> str:
    """The per-request override (x-fake-reply header), else the configured reply, else default."""
    if override is not None:
        return override
    if configured is None:
        return default
    return configured if isinstance(configured, str) else configured(body)


def cut(text: str, limit: Any) -> tuple[list[str], bool]:
    """The reply's tokens, at most `limit` of them when it is an integer."""
    tokens = tokens_of(text)
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(tokens):
        return tokens[:limit], True
    return tokens, False


# OpenAI's envelope fields by status, as its API sends them.
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (injected by the fake upstream)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to make this request."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


def error_envelope(
    status: int,
    *,
    message: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> Body:
    """OpenAI's `{"error": {message, type, param, code}}`, its fields defaulted by status."""
    fallback_type = "server_error" if status >= 500 else "invalid_request_error"
    default_type, default_code, default_message = _ERROR_DEFAULTS.get(
        status, (fallback_type, None, f"HTTP {status} (injected by the fake upstream).")
    )
    return {
        "error": {
            "message": message or default_message,
            "type": error_type or default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
