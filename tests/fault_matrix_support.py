"""The upstream fault matrix's machinery (tests/api/test_fault_matrix.py): the faults, the
gateway's configuration (one model per case, so that each case has a circuit of its own), one
request per mode, and what each case observed from outside: what the client received, the
attempts the upstream saw, the circuit on /metrics and the usage ledger's rows.

Every fault but two comes from the project's FakeUpstream. The two others: a connection refused
is a port nothing listens on, and a truncated SSE stream — a stream whose body ends cleanly
(no reset) before its last chunk and `[DONE]`, which the fake cannot send (it only aborts a
connection) — comes from `TruncatingUpstream`, a few lines of socket server below.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from batch_support import chat_line, file_lines, submit, wait_for
from support import MASTER_KEY, RunningServer, free_port, wait_until
from usage_support import flushed_records_of, get_usage, table_rows

MODES = ("plain", "stream", "background", "batch")
BACKUP = "backup"  # every case's fallback, on a FakeUpstream of its own that never fails
PROMPT = "hello there"
REPLY = "Fake reply to: hello there"  # the fake's answer; streamed one word per chunk
# One retry: the backoff before it is 0.5 to 1 s, so each case that exhausts its retries costs
# about a second (a second retry would add 1 to 1.5 s to each of some seventy cases).
MAX_RETRIES = 1
ATTEMPTS = MAX_RETRIES + 1
BACKOFF_MIN_S = 0.5
RETRY_AFTER_S = 1.2  # above the first backoff (0.5 to 1 s): a wait this long is Retry-After's
FIRST_BYTE_TIMEOUT_S = 1.0
STALL_TIMEOUT_S = 0.5  # first_byte_timeout_s of the stall cases' models: stalls end fast
# One request may take this long; the trickle's models have less (TRICKLE_TIMEOUT_S).
TIMEOUT_S = 15.0
TRICKLE_TIMEOUT_S = 0.9  # the trickle is at 0.6 s and 1.2 s: it fires 0.3 s from either
# USD per million tokens: the case models, and the backup, so that a row's price says which
# model it was priced as.
PRICES = (1000.0, 2000.0)
BACKUP_PRICES = (10.0, 20.0)
# Each failed attempt counts; a request whose attempts all fail opens its model's circuit.
BREAKER_FAILURES = ATTEMPTS
# The three events of a stream before a cut or a stall: the role chunk, "Fake", " reply".
CHUNKS_BEFORE_CUT = 3
GAUGE = "aiservice_circuit_breaker_state"
ATTEMPTS_METRIC = "aiservice_upstream_attempts_total"


@dataclass(frozen=True)
class FaultKind:
    """One row of the matrix: the faults queued on the primary upstream before each case."""

    name: str
    faults: tuple[Fault, ...] = ()
    modes: tuple[str, ...] = MODES  # the modes in which this fault means something
    model: dict[str, Any] = field(default_factory=dict)  # the case models' settings
    where: str = "fake"  # "fake", "refused" (nothing listens) or "truncating"
    opens_first: bool = False  # the case model's circuit is opened before the case


def _every_attempt(**fault: Any) -> tuple[Fault, ...]:
    return (Fault(times=ATTEMPTS, **fault),)


FAULT_KINDS = {
    kind.name: kind
    for kind in (
        FaultKind("429-retry-after", _every_attempt(status=429, retry_after=RETRY_AFTER_S)),
        FaultKind("429", _every_attempt(status=429)),
        FaultKind("500", _every_attempt(status=500)),
        FaultKind("502", _every_attempt(status=502)),
        FaultKind("503", _every_attempt(status=503)),
        FaultKind("refused", where="refused"),
        # A stream is cut after its third event; a whole answer after its headers.
        FaultKind("reset-mid-body", _every_attempt(drop_after_chunks=CHUNKS_BEFORE_CUT)),
        # The fake would wait 30 s; the client gives up after first_byte_timeout_s.
        FaultKind(
            "stall-before-headers",
            _every_attempt(first_byte_delay_s=30),
            model={"first_byte_timeout_s": STALL_TIMEOUT_S},
        ),
        FaultKind(
            "stall-mid-stream",
            _every_attempt(stall_after_chunks=CHUNKS_BEFORE_CUT, stall_s=30),
            modes=("stream",),
            model={"first_byte_timeout_s": STALL_TIMEOUT_S},
        ),
        FaultKind("malformed-json", _every_attempt(malformed_json=True)),
        FaultKind("truncated-sse", where="truncating", modes=("stream",)),
        # Every gap (0.6 s) is shorter than first_byte_timeout_s: no read ever times out.
        FaultKind(
            "slow-trickle",
            _every_attempt(first_byte_delay_s=0.6, stall_after_chunks=2, stall_s=0.6),
        ),
        # The same trickle, for a model whose whole request may last only 0.9 s (timeout_s).
        FaultKind(
            "slow-trickle-past-timeout",
            _every_attempt(first_byte_delay_s=0.6, stall_after_chunks=2, stall_s=0.6),
            model={"timeout_s": TRICKLE_TIMEOUT_S},
        ),
        # One failure opens the circuit (breaker_failures = 1), opened before the case.
        FaultKind(
            "circuit-open",
            model={"max_retries": 0, "breaker_failures": 1},
            opens_first=True,
        ),
    )
}


def case_model(kind: str, mode: str, fallback: bool) -> str:
    return f"{kind}-{mode}{'-fb' if fallback else ''}"


def cases() -> Iterator[tuple[str, str, bool]]:
    """Every meaningful (fault, mode, fallback), in the matrix's order."""
    for kind in FAULT_KINDS.values():
        for mode in kind.modes:
            for fallback in (False, True):
                yield kind.name, mode, fallback


# --- the gateway's configuration ---------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


def _model_entry(name: str, base_url: str, **fields: Any) -> str:
    lines = [f"name = {_toml(name)}", 'provider = "openai"', f"base_url = {_toml(base_url)}"]
    lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    return "[[models]]\n" + "\n".join(lines) + "\n"


@dataclass
class Upstreams:
    """Where the case models point: the primary fake, the backup fake, the truncating server,
    and one dead URL per connection-refused case (the host's circuit would be shared)."""

    primary: FakeUpstream
    backup: FakeUpstream
    truncating: TruncatingUpstream
    dead: dict[str, str] = field(default_factory=dict)  # case model -> a URL nobody serves

    def base_url(self, kind: FaultKind, model: str) -> str:
        if kind.where == "refused":
            return self.dead.setdefault(model, f"http://127.0.0.1:{free_port()}/v1")
        if kind.where == "truncating":
            return self.truncating.base_url
        return self.primary.base_url


def config_toml(upstreams: Upstreams) -> str:
    entries = [
        _model_entry(
            BACKUP,
            upstreams.backup.base_url,
            max_retries=0,
            price_input_per_1m=BACKUP_PRICES[0],
            price_output_per_1m=BACKUP_PRICES[1],
        )
    ]
    for name, mode, fallback in cases():
        kind = FAULT_KINDS[name]
        model = case_model(name, mode, fallback)
        fields: dict[str, Any] = {
            "max_retries": MAX_RETRIES,
            "timeout_s": TIMEOUT_S,
            "connect_timeout_s": 1,
            "first_byte_timeout_s": FIRST_BYTE_TIMEOUT_S,
            "breaker_failures": BREAKER_FAILURES,
            "breaker_reset_s": 600,
            "price_input_per_1m": PRICES[0],
            "price_output_per_1m": PRICES[1],
            **kind.model,
        }
        if fallback:
            fields["fallbacks"] = [BACKUP]
        entries.append(_model_entry(model, upstreams.base_url(kind, model), **fields))
    return "\n".join(entries)


# --- a truncated stream --------------------------------------------------------------------------


class TruncatingUpstream:
    """Answers every POST with 200 and a body cut short, then closes the connection cleanly
    (FIN, no reset): a stream sends its first three events — the role chunk, "Fake", " reply" —
    and ends without a finish_reason, usage or `[DONE]` (`connection: close`, no length: the
    body ends where the connection does); a whole answer sends half of its declared length."""

    def __init__(self) -> None:
        self._listening = socket.create_server(("127.0.0.1", 0))
        self.port = self._listening.getsockname()[1]
        self.models: list[str] = []  # the `model` of each request received, in order
        self._thread = threading.Thread(target=self._serve, daemon=True, name="truncating")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> TruncatingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listening.close()
        self._thread.join(5)

    def count(self, model: str) -> int:
        return self.models.count(model)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listening.accept()
            except OSError:  # closed: stop
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = json.loads(reader.read(length) or b"{}")
        self.models.append(body.get("model"))
        connection.sendall(truncated_answer(body))
        connection.shutdown(socket.SHUT_WR)


def truncated_answer(body: dict[str, Any]) -> bytes:
    base = {"id": "chatcmpl-cut", "created": 0, "model": body.get("model")}
    if body.get("stream"):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        deltas = [{"role": "assistant", "content": ""}, {"content": "Fake"}, {"content": " reply"}]
        chunks = [
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]}
            for d in deltas
        ]
        return head + b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    message = {"role": "assistant", "content": REPLY}
    whole = json.dumps(
        {**base, "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        f"content-length: {len(whole)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head + whole[: len(whole) // 2]


# --- what a case observed ----------------------------------------------------------------------


@dataclass
class Received:
    """What the client received, in one of four shapes, summed up in `outcome`."""

    outcome: str  # e.g. "200 answer", "503 upstream_unavailable", "200 stream, 2 deltas, …"
    text: str = ""  # the answer's text as the client got it (a stream's deltas joined)
    model: str | None = None  # the `model` the answer names
    message: str = ""  # the error's message, if it ended with one
    body: Any = None  # the JSON, events, or batch line, for a failure message
    rows: list[dict[str, Any]] = field(default_factory=list)  # its usage records


@dataclass
class Observation:
    received: Received
    attempts: list[str]  # the outcome of each attempt at the case's model, from /metrics
    upstream_saw: int  # the requests naming the case's model at its upstream (-1: none to ask)
    backup_saw: int  # the requests the backup upstream received
    circuit: float  # the case model's circuit after the case: 0 closed, 2 open
    host_circuit: float  # its upstream host's circuit
    gaps_s: list[float]  # between the attempts the primary fake received
    streamed: set[bool]  # whether those attempts asked for a stream
    seconds: float


def scrape(http: httpx.Client) -> dict[tuple[str, frozenset], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def attempt_counts(samples: dict, model: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for (name, labels), value in samples.items():
        found = dict(labels)
        if name == ATTEMPTS_METRIC and found.get("model") == model:
            counts[found["outcome"]] = counts.get(found["outcome"], 0) + value
    return counts


def attempts_between(before: dict, after: dict, model: str) -> list[str]:
    """Each attempt's outcome made between two scrapes, sorted (the metric keeps no order)."""
    old, new = attempt_counts(before, model), attempt_counts(after, model)
    return sorted(
        outcome for outcome, n in new.items() for _ in range(int(n - old.get(outcome, 0)))
    )


def breaker_state(samples: dict, circuit: str) -> float:
    return samples.get((GAUGE, frozenset({("upstream", circuit)})), 0.0)


# --- one request per mode --------------------------------------------------------------------


def chat_body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], **fields}


def error_of(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def request_plain(gateway: Gateway, model: str, request_id: str) -> Received:
    response = gateway.http.post(
        "/v1/chat/completions", json=chat_body(model), headers={"x-request-id": request_id}
    )
    body = response.json()
    if response.status_code == 200:
        message = body["choices"][0]["message"]
        received = Received("200 answer", message["content"], body["model"], body=body)
    else:
        error = error_of(body)
        outcome = f"{response.status_code} {error.get('code')}"
        received = Received(outcome, body=body, message=error.get("message", ""))
    received.rows = flushed_records_of(gateway.server, request_id)
    return received


def request_stream(gateway: Gateway, model: str, request_id: str) -> Received:
    """A streamed chat completion read to its end; the outcome names the content deltas that
    arrived and how the stream ended: `[DONE]`, an error event, or cut (no end at all)."""
    events: list[Any] = []
    body = chat_body(model, stream=True, stream_options={"include_usage": True})
    headers = {"x-request-id": request_id}
    with gateway.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as sse:
        status = sse.status_code
        try:
            for line in sse.iter_lines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    events.append(data if data == "[DONE]" else json.loads(data))
            ending = "[DONE]" if events and events[-1] == "[DONE]" else None
        except httpx.HTTPError:
            ending = "cut"
    received = _stream_received(status, events, ending)
    received.rows = flushed_records_of(gateway.server, request_id)
    return received


def _stream_received(status: int, events: list[Any], ending: str | None) -> Received:
    chunks = [e for e in events if isinstance(e, dict) and "choices" in e]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    text = "".join(d for d in deltas if d)
    finished = any(c["choices"] and c["choices"][0].get("finish_reason") for c in chunks)
    errors = [error_of(e) for e in events if error_of(e)]
    if ending is None:
        ending = f"error {errors[-1].get('code')}" if errors else "no end"
    parts = [f"{status} stream", f"{sum(1 for d in deltas if d)} deltas"]
    parts += ["finish_reason"] if finished else []
    models = {chunk["model"] for chunk in chunks}
    assert len(models) <= 1, models  # every chunk names the same model
    message = errors[-1].get("message", "") if errors else ""
    model = next(iter(models), None)
    return Received(", ".join([*parts, ending]), text, model, message, body=events)


def request_background(gateway: Gateway, model: str, request_id: str) -> Received:
    created = gateway.http.post(
        "/v1/responses",
        json={"model": model, "input": PROMPT, "background": True},
        headers={"x-request-id": request_id},
    )
    assert created.status_code == 200, created.text
    response_id = created.json()["id"]

    def ended() -> dict | None:
        polled = gateway.http.get(f"/v1/responses/{response_id}")
        assert polled.status_code == 200, polled.text
        body = polled.json()
        return body if body["status"] not in ("queued", "in_progress") else None

    body = wait_until(ended, timeout=60, what=f"background response {response_id} to end")
    text = "".join(
        part.get("text", "")
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
    )
    error = body.get("error") or {}
    outcome = body["status"] + (f" {error['code']}" if error else "")
    received = Received(outcome, text, body["model"], error.get("message", ""), body=body)
    received.rows = flushed_records_of(gateway.server, request_id)
    return received


def request_batch(gateway: Gateway, model: str, request_id: str) -> Received:
    """A batch of one line; the outcome is the batch's status, then the line's status and
    the file it is in."""
    batch = wait_for(gateway.sdk, submit(gateway.sdk, [chat_line(request_id, model, PROMPT)]).id)
    output = file_lines(gateway.sdk, batch.output_file_id)
    errors = file_lines(gateway.sdk, batch.error_file_id)
    assert len(output) + len(errors) == 1, (output, errors)
    line, where = (output[0], "output") if output else (errors[0], "error")
    answer = line["response"]["body"]
    outcome = f"{batch.status}, line {line['response']['status_code']} in the {where} file"
    if where == "output":
        received = Received(outcome, answer["choices"][0]["message"]["content"], answer["model"])
    else:
        error = error_of(answer)
        received = Received(f"{outcome} ({error.get('code')})", message=error.get("message", ""))
    received.body = line

    def rows() -> list[dict[str, Any]] | None:
        assert get_usage(gateway.server, MASTER_KEY).status_code == 200
        found = [r for r in table_rows(gateway.server) if r["metadata"].get("batch_id") == batch.id]
        return found or None

    received.rows = wait_until(rows, timeout=30, what=f"the usage record of batch {batch.id}")
    return received


REQUESTS: dict[str, Callable[[Gateway, str, str], Received]] = {
    "plain": request_plain,
    "stream": request_stream,
    "background": request_background,
    "batch": request_batch,
}


@dataclass
class Gateway:
    server: RunningServer
    http: httpx.Client
    sdk: OpenAI
    upstreams: Upstreams

    def upstream_saw(self, kind: FaultKind, model: str) -> int:
        if kind.where == "refused":
            return -1
        if kind.where == "truncating":
            return self.upstreams.truncating.count(model)
        return sum(
            1 for r in self.upstreams.primary.requests if (r.json or {}).get("model") == model
        )

    def run(self, name: str, mode: str, fallback: bool) -> Observation:
        """Queue the fault, make the request, and gather what came of it."""
        kind = FAULT_KINDS[name]
        model = case_model(name, mode, fallback)
        primary, backup = self.upstreams.primary, self.upstreams.backup
        if kind.opens_first:
            self._open_circuit(model)
        primary.reset()
        backup.reset()
        for fault in kind.faults:
            primary.add_fault(fault)
        before = scrape(self.http)
        started = time.monotonic()
        received = REQUESTS[mode](self, model, f"req_matrix_{model}")
        seconds = time.monotonic() - started
        after = scrape(self.http)
        base_url = self.upstreams.base_url(kind, model)
        sent = [r for r in primary.requests if (r.json or {}).get("model") == model]
        times = [r.received for r in sent]
        primary.clear_faults()
        return Observation(
            received=received,
            attempts=attempts_between(before, after, model),
            upstream_saw=self.upstream_saw(kind, model),
            backup_saw=backup.request_count("/v1/chat/completions"),
            circuit=breaker_state(after, f"{base_url}#{model}"),
            host_circuit=breaker_state(after, f"{base_url}#*"),
            gaps_s=[later - earlier for earlier, later in pairwise(times)],
            streamed={bool((r.json or {}).get("stream")) for r in sent},
            seconds=seconds,
        )

    def _open_circuit(self, model: str) -> None:
        """One failed request opens the circuit of a model with breaker_failures = 1."""
        self.upstreams.primary.add_fault(Fault(status=500))
        opening = self.http.post("/v1/chat/completions", json=chat_body(model))
        assert opening.status_code in (200, 503), opening.text  # 200: a fallback answered
        assert breaker_state(scrape(self.http), f"{self.upstreams.primary.base_url}#{model}") == 2
