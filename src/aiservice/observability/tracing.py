"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set: one span per model request.

Spans are made from the usage ledger's records, so they carry what the record knows (served
model, tokens, cost, status, upstream attempts as events) and cost the request path nothing:
the SDK's batch processor exports them over OTLP/HTTP from its own thread. The SDK is an
optional extra (`pip install 'aiservice[otel]'`), imported only when the variable is set. The
standard OTEL_* variables (endpoint, headers, service name, batch delays) apply as usual.
No tenant data goes into a span: no owner, key, user, metadata or message text.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class RequestTracing:
    """A tracer provider of this process's own; `observe_record` is the ledger's listener."""

    def __init__(self) -> None:
        # Imported here: the SDK is optional and slow to import.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode

        # OTEL_SERVICE_NAME, when set, names the service; Resource.create reads it.
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "aiservice"}
        # Not the global provider: several apps (tests) may run in one process.
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("aiservice")
        self._server_kind = SpanKind.SERVER
        self._error_status = Status(StatusCode.ERROR)

    def observe_record(self, record: dict[str, Any]) -> None:
        """One finished span for one usage record."""
        started_ns = int(record["created_at"] * 1e9)
        model = record["model_served"] or ""
        attributes: dict[str, Any] = {
            "http.route": record["route"],
            "http.response.status_code": record["status_code"],
            "gen_ai.request.model": record["model_requested"] or "",
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": record["input_tokens"],
            "gen_ai.usage.output_tokens": record["output_tokens"],
            "aiservice.request_id": record["request_id"],
            "aiservice.background": record["background"],
            "aiservice.cost_usd": record["cost_usd"],
            "aiservice.upstream_attempts": record["upstream_attempts"],
        }
        if record["ttft_ms"] is not None:
            attributes["aiservice.ttft_ms"] = record["ttft_ms"]
        if record["error_code"]:
            attributes["error.type"] = record["error_code"]
        span = self._tracer.start_span(
            f"{record['route']} {model}".strip(),
            kind=self._server_kind,
            start_time=started_ns,
            attributes=attributes,
        )
        for number, attempt in enumerate(record["_attempts"], start=1):
            span.add_event(
                "upstream attempt",
                {
                    "attempt": number,
                    "model": attempt.model,
                    "outcome": attempt.outcome,
                    "latency_ms": attempt.latency_ms,
                },
            )
        if record["status_code"] >= 500:
            span.set_status(self._error_status)
        span.end(end_time=started_ns + int(record["latency_ms"] * 1e6))

    async def close(self) -> None:
        """Export what is left; the SDK's shutdown blocks, so it runs in a thread."""
        await asyncio.to_thread(self._provider.shutdown)


def tracing_from_environment() -> RequestTracing | None:
    """Traces when an OTLP endpoint is configured and the SDK is installed, else None."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    try:
        return RequestTracing()
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "no traces (pip install 'aiservice[otel]')"
        )
        return None
