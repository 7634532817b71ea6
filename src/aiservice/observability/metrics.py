"""Prometheus metrics, one registry per app (tests run many apps in one process).

Every HTTP request is observed exactly once: a model request by the usage ledger's record of
it (which knows the served model, tokens, cost and upstream attempts), any other request by
the HTTP middleware, which knows only its route and status. A background job is observed when
its record is taken, under the route `/v1/responses:background`; the request that queued it is
an ordinary HTTP request. Labels never carry tenant data (no owner, key or user) and take values
from bounded sets: route templates, configured model names, status and error codes.

State that lives elsewhere (circuit breakers, possibly in Redis; the job queue, in the
database) is read when scraped, by `render`.

The processes of `aiservice serve --workers N` share their metrics through prometheus-client's
multiprocess mode: the parent sets PROMETHEUS_MULTIPROC_DIR (before the children import
prometheus-client, which then keeps every value in files there), and a scrape of any child
answers the sum over all of them. Each gauge says how its processes' values combine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from aiservice.providers.breaker import CircuitBreaker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BACKGROUND_SUFFIX = ":background"
UNMATCHED_ROUTE = "unmatched"  # a path no route answers: its own text would be unbounded
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")

# Seconds. A gateway answers in milliseconds (an error, a cached list) up to minutes (a long
# local generation), so the buckets span both.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServiceMetrics:
    """The app's metrics; `observe_record` is the usage ledger's listener."""

    def __init__(self) -> None:
        # No `*_created` series beside each counter and histogram: they double the series and
        # Prometheus does not read them from this text format. (A process-wide switch.)
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self._add_request_metrics(self.registry)
        self._add_upstream_metrics(self.registry)
        self._add_state_gauges(self.registry)
        self._add_safety_metrics(self.registry)
        self.retention_purged = Counter(
            "aiservice_retention_purged_rows",
            "Stored rows deleted by the retention purge (this process's rounds), by kind.",
            ["kind"],
            registry=self.registry,
        )
        # Label children by label values: .labels() validates and locks on every call, and the
        # middleware asks for the same few children on every request.
        self._children: dict[tuple[Any, ...], Any] = {}
        # Several processes: a scrape shows what their files hold, summed (values are kept
        # in the files, whichever registry a metric is in).
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None
        self._exposed = self.registry
        if self._multiprocess_dir is not None:
            self._exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self._exposed, path=self._multiprocess_dir)

    def _add_request_metrics(self, registry: CollectorRegistry) -> None:
        """What each request took: its time, tokens, cost, and error if any."""
        self.request_duration = Histogram(
            "aiservice_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's last byte).",
            ["route", "model", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "aiservice_time_to_first_token_seconds",
            "Time from a model request's arrival to its first generated token.",
            ["route", "model"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "aiservice_tokens",
            "Tokens processed, by served model; kind is input or output.",
            ["model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "aiservice_cost_usd",
            "Cost of the model requests in USD, by served model (the usage ledger's prices).",
            ["model"],
            registry=registry,
        )
        self.errors = Counter(
            "aiservice_errors",
            "Responses with status 400 or more; code is the error's code (http_<status> when "
            "the request called no model).",
            ["route", "model", "code"],
            registry=registry,
        )

    def _add_upstream_metrics(self, registry: CollectorRegistry) -> None:
        """How the upstreams answered: each attempt, the retries, each one's circuit."""
        self.upstream_attempts = Counter(
            "aiservice_upstream_attempts",
            "Attempts at an upstream; outcome is ok or why the attempt failed.",
            ["model", "upstream", "outcome"],
            registry=registry,
        )
        self.upstream_retries = Counter(
            "aiservice_upstream_retries",
            "Upstream attempts beyond the first of each request, by model.",
            ["model"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "aiservice_circuit_breaker_state",
            "An upstream's circuit: 0 closed, 1 half-open, 2 open.",
            ["upstream"],
            registry=registry,
            # Every process reads it at scrape time (shared in Redis when redis_url is set):
            # the scraped process's reading, the newest, is the one to show.
            multiprocess_mode="mostrecent",
        )

    def _add_state_gauges(self, registry: CollectorRegistry) -> None:
        """What is under way when scraped: requests being answered, jobs waiting."""
        self.in_flight = Gauge(
            "aiservice_in_flight_requests",
            "HTTP requests received and not yet answered in full.",
            registry=registry,
            multiprocess_mode="livesum",  # the processes alive now, added up
        )
        self.queue_depth = Gauge(
            "aiservice_background_queue_depth",
            "Background responses queued and not yet taken by a worker.",
            registry=registry,
            multiprocess_mode="mostrecent",  # one queue, read from the database at scrape time
        )

    def _add_safety_metrics(self, registry: CollectorRegistry) -> None:
        """What moderation and the PII policy found; the labels never carry content."""
        self.moderation_flags = Counter(
            "aiservice_moderation_flagged",
            "Moderated texts flagged, by category; side is input or output, action is scored "
            "(reported only) or blocked.",
            ["category", "side", "action"],
            registry=registry,
        )
        self.pii_findings = Counter(
            "aiservice_pii_findings",
            "Personal data found in model requests, by kind; action is flagged or redacted.",
            ["kind", "action"],
            registry=registry,
        )

    def observe_moderation(self, categories: list[str], side: str, action: str) -> None:
        for category in categories:
            self._child(self.moderation_flags, category, side, action).inc()

    def observe_pii(self, counts: dict[str, int], action: str) -> None:
        for kind, count in counts.items():
            self._child(self.pii_findings, kind, action).inc(count)

    def observe_purged(self, counts: dict[str, int]) -> None:
        for kind, count in counts.items():  # 0 too: every kind's series exists once it ran
            self._child(self.retention_purged, kind).inc(count)

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_http(self, route: str, status: int, duration_s: float) -> None:
        """A request that called no model (the middleware's part)."""
        self._child(self.request_duration, route, "", str(status)).observe(duration_s)
        if status >= 400:
            self._child(self.errors, route, "", f"http_{status}").inc()

    def observe_record(self, record: dict[str, Any]) -> None:
        """A model request, from its usage record."""
        route = record["route"] + (BACKGROUND_SUFFIX if record["background"] else "")
        model = record["model_served"] or ""
        status = record["status_code"]
        self._child(self.request_duration, route, model, str(status)).observe(
            record["latency_ms"] / 1000
        )
        if record["ttft_ms"] is not None:
            self._child(self.time_to_first_token, route, model).observe(record["ttft_ms"] / 1000)
        if model:
            self._child(self.tokens, model, "input").inc(record["input_tokens"])
            self._child(self.tokens, model, "output").inc(record["output_tokens"])
            self._child(self.cost, model).inc(record["cost_usd"])
        if status >= 400:
            code = record["error_code"] or f"http_{status}"
            self._child(self.errors, route, model, code).inc()
        attempts_by_model: dict[str, int] = {}
        for attempt in record["_attempts"]:
            upstream = _public_url(attempt.upstream)
            self._child(self.upstream_attempts, attempt.model, upstream, attempt.outcome).inc()
            attempts_by_model[attempt.model] = attempts_by_model.get(attempt.model, 0) + 1
        for attempt_model, count in attempts_by_model.items():
            if count > 1:
                self._child(self.upstream_retries, attempt_model).inc(count - 1)

    async def render(
        self,
        breakers: Iterable[CircuitBreaker],
        queued_jobs: Callable[[], Awaitable[int]],
    ) -> bytes:
        """The exposition text, after reading the state kept outside this process."""
        states: dict[str, int] = {}
        for breaker in breakers:
            # Two models may share one upstream and model name, hence one circuit name.
            state = BREAKER_STATES[await breaker.state()]
            name = _public_url(breaker.name)
            states[name] = max(state, states.get(name, 0))
        for name, state in states.items():
            self._child(self.breaker_state, name).set(state)
        self.queue_depth.set(await queued_jobs())
        if self._multiprocess_dir is not None:
            forget_dead_processes(Path(self._multiprocess_dir))
        return generate_latest(self._exposed)


def forget_dead_processes(directory: Path) -> None:
    """Drop the live gauges (in-flight requests) of processes that are gone, killed ones
    included: their counters and histograms stay, so that no total ever goes down."""
    pids = {int(m.group(1)) for m in map(_LIVE_GAUGE_FILE.fullmatch, os.listdir(directory)) if m}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, str(directory))
        except PermissionError:
            pass  # alive, someone else's


@lru_cache(maxsize=256)
def _public_url(url: str) -> str:
    """The URL without credentials or query: a label is shown to whoever reads the metrics."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))
