"""Pure ASGI middleware: request ids and access lines, and the request body size limit."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiservice.api.email_routes import EMAIL_ROUTES
from aiservice.api.error_handlers import error_body, error_response
from aiservice.errors import InternalError, RequestTooLarge
from aiservice.metering.ledger import UsageLedger
from aiservice.metering.meter import Meter, make_current, restore
from aiservice.observability.logging import request_id_var
from aiservice.observability.metrics import UNMATCHED_ROUTE, ServiceMetrics

access_log = logging.getLogger("aiservice.access")
log = logging.getLogger(__name__)
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_EMAIL_SEGMENT = re.compile(r"[^/]*@[^/]*")


# The routes that call a model: each request on them is metered for the usage ledger.
METERED_ROUTES = frozenset(
    {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/moderations"),  # the classifier: priced 0, but counted in usage
        ("POST", "/api/ai/chat/completions"),
        ("POST", "/v1/responses"),
    }
    | EMAIL_ROUTES
)


class RequestContextMiddleware:
    """Give each request one id (the client's `x-request-id` if sane), echo it, log one line;
    meter the requests of model routes for the usage ledger; observe the others' metrics
    (a model request's are observed from its usage record)."""

    def __init__(
        self,
        app: ASGIApp,
        ledger: UsageLedger | None = None,
        metrics: ServiceMetrics | None = None,
    ):
        self.app = app
        self.ledger = ledger
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: int | None = None
        meter = None
        if self.ledger is not None and (scope["method"], scope["path"]) in METERED_ROUTES:
            meter = Meter(scope["path"], request_id)
            meter_token = make_current(meter)
        if self.metrics is not None:
            self.metrics.in_flight.inc()

        charge = _Charge(self.ledger, meter)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                if meter is not None and meter.admission is not None:
                    headers += _encoded(meter.admission.headers)  # x-ratelimit-*
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                charge.take(status)  # before the answer's last byte (see _Charge)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # A fault of ours. Answered here, inside the request's context, so the 500 carries
            # the request id and the route's error shape; never the exception's own text.
            log.error("request failed", extra={"error_type": type(exc).__name__})
            if status is not None:
                raise  # the response has begun: nothing sane can be sent any more
            response = error_response(InternalError(), scope["path"])
            await response(scope, receive, send_with_id)
        finally:
            duration_s = time.perf_counter() - started
            if meter is not None:
                restore(meter_token)
                charge.take(status)  # unless taken already: an answer that did not end
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                if meter is None or meter.deferred:
                    self.metrics.observe_http(_route_template(scope), status or 500, duration_s)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": logged_path(scope["path"]),
                    "status": status or 500,
                    "duration_ms": round(duration_s * 1000, 2),
                },
            )
            request_id_var.reset(token)


class _Charge:
    """A model request's usage record, taken once: as its answer's last body message goes out,
    or when the app returns for an answer that never ended (an error, the client gone).
    Taken (and journaled) before the last byte, so that a client that has its whole answer has
    its charge, even if the process is killed next: a stream's app (sse-starlette) returns only
    after cancelling its ping and disconnect tasks, which a busy event loop can delay by 100 ms
    and more (found by tests/system/soak_harness.py)."""

    __slots__ = ("ledger", "meter", "taken")

    def __init__(self, ledger: UsageLedger | None, meter: Meter | None) -> None:
        self.ledger, self.meter, self.taken = ledger, meter, False

    def take(self, status: int | None) -> None:
        meter = self.meter
        if meter is None or meter.deferred or self.taken or self.ledger is None:
            return
        self.taken = True
        self.ledger.record(meter, status or 500)
        if meter.settles_tokens:
            _settle(meter)


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


_settling: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak references


def _settle(meter: Meter) -> None:
    """Correct the request's token charge to its real usage, off the response path."""
    used = meter.input_tokens + meter.output_tokens if meter.model_served else 0
    task = asyncio.create_task(meter.admission.settle(used))
    _settling.add(task)
    task.add_done_callback(_settling.discard)


def logged_path(path: str) -> str:
    """The path as the access line shows it: a segment with an `@` (the admin routes name a
    user by e-mail address) becomes `{email}`, since a log line never holds an address."""
    return _EMAIL_SEGMENT.sub("{email}", path) if "@" in path else path


def _route_template(scope: Scope) -> str:
    # The router leaves the route it chose in the scope; its path is a template
    # ("/v1/responses/{response_id}"), so the metrics' label values stay few.
    return getattr(scope.get("route"), "path", UNMATCHED_ROUTE)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.match(candidate):
                return candidate
            break
    return f"req_{uuid.uuid4().hex}"


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}  # paths with limits of their own (uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await _send_too_large(send, max_bytes, scope["path"])
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # An HTTPException, not RequestTooLarge: FastAPI turns any other exception
                    # raised while it reads the body into a 400 "error parsing the body", so a
                    # chunked upload over the limit got 400. error_handlers maps this 413 back.
                    raise HTTPException(413, _too_large_message(max_bytes))
            return message

        await self.app(scope, counting_receive, send)


def _too_large_message(max_bytes: int) -> str:
    return f"The request body is larger than the limit of {max_bytes} bytes."


async def _send_too_large(send: Send, max_bytes: int, path: str) -> None:
    body = error_body(RequestTooLarge(_too_large_message(max_bytes)), path)
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
