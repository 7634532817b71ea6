"""OpenTelemetry traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a real server sends one span per
model request over OTLP/HTTP to a real local listener, decoded with OpenTelemetry's own protobuf
classes. Without the variable no exporter is made at all."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from aiservice.observability.tracing import tracing_from_environment
from aiservice.testing.fake_upstream import FakeUpstream, Fault
from support import MASTER_KEY, RunningServer, start_server, stop_server, wait_until

NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
CHAT = "/v1/chat/completions"


class Collector:
    """An OTLP/HTTP trace receiver on a free local port; `spans` holds what it was sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.received(self.path, body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, path: str, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.paths.append(path)
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(span)
                        self.resources.append(resource)

    def spans_of(self, request_id: str) -> list[tuple[Any, dict[str, Any]]]:
        """The spans about the request with this id, each with its resource's attributes."""
        with self._lock:
            return [
                (span, resource)
                for span, resource in zip(self.spans, self.resources, strict=True)
                if attributes(span.attributes).get("aiservice.request_id") == request_id
            ]

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP key-values as a plain dict."""
    values: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-traced")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "up"\nprovider = "openai"\nbase_url = "{upstream.base_url}"\n'
        "max_retries = 1\nprice_input_per_1m = 100.0\nprice_output_per_1m = 100.0\n",
        encoding="utf-8",
    )
    env = {
        **NO_DATABASE_URL,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": None,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between exports
    }
    server = start_server(home, env=env)
    yield server
    stop_server(server)


def test_a_model_request_is_one_span_with_model_tokens_and_status(traced, collector):
    request_id = "req_traced_plain"
    response = httpx.post(
        f"{traced.base_url}{CHAT}",
        json={"model": "up", "messages": [{"role": "user", "content": "hello there"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": request_id},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    ((span, resource),) = wait_until(
        lambda: collector.spans_of(request_id), timeout=30, what="the span"
    )
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    values = attributes(span.attributes)
    assert values["http.route"] == CHAT
    assert values["http.response.status_code"] == 200
    assert values["gen_ai.request.model"] == "up" and values["gen_ai.response.model"] == "up"
    assert values["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert values["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert values["aiservice.cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] + usage["completion_tokens"]) * 100 / 1_000_000
    )
    assert span.end_time_unix_nano > span.start_time_unix_nano
    (event,) = span.events
    assert event.name == "upstream attempt" and attributes(event.attributes)["outcome"] == "ok"
    assert resource["service.name"] == "aiservice"
    # Neither the owner nor the message travels with the span.
    assert "hello there" not in str(span) and MASTER_KEY not in str(span)


def test_a_failed_request_is_an_error_span_with_its_attempts(traced, collector, upstream):
    upstream.add_fault(Fault(status=500, times=2))
    request_id = "req_traced_failed"
    response = httpx.post(
        f"{traced.base_url}{CHAT}",
        json={"model": "up", "messages": [{"role": "user", "content": "hello there"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": request_id},
        timeout=60,
    )
    assert response.status_code == 503, response.text
    ((span, _),) = wait_until(lambda: collector.spans_of(request_id), timeout=30, what="the span")
    values = attributes(span.attributes)
    assert values["http.response.status_code"] == 503
    assert values["error.type"] == "upstream_unavailable"
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert [attributes(e.attributes)["outcome"] for e in span.events] == ["HTTP 500"] * 2


def test_without_an_endpoint_no_exporter_is_made(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing_from_environment() is None
