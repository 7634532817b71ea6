"""Structured JSON logs on stderr, each line carrying the request id of the request it is about."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


_TRACEBACK_HEADER = "Traceback (most recent call last):"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        # Starlette hands uvicorn a failed lifespan's formatted traceback as the message itself,
        # which the formatter below cannot see as one: keep only its last line, the exception.
        if isinstance(record.msg, str) and record.msg.startswith(_TRACEBACK_HEADER):
            record.msg, record.args = record.msg.rstrip().rsplit("\n", 1)[-1], ()
        return True


class _NoTracebackFormatter(JsonFormatter):
    """Log lines never carry stack traces: they may hold request data or secrets."""

    def formatException(self, ei) -> str:
        return ""

    def formatStack(self, stack_info: str) -> str:
        return ""


def configure_logging(level: str = "INFO") -> None:
    """Send every logger (ours, uvicorn's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _NoTracebackFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC
            # uvicorn adds an ANSI-coloured copy of its messages for terminals.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # We write our own access line (with the request id); uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every upstream request at INFO; "upstream attempt" already says it, with the
    # outcome and latency. One line fewer per request on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
