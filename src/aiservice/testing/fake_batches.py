"""The fake upstream's Batch API: batches over uploaded JSONL files, each line answered as its
normal route answers it, their progress worked out from the wall clock whenever one is read.

No background task runs: a retrieve moves a batch on at most one step (validating, then
in_progress, then its end once its latency has passed), so a poller sees every state and a test
decides how long it lasts. `metadata["fake_scenario"]` chooses how a batch ends (SCENARIOS).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiservice.testing.delivery import Answer, dumps, error_answer, json_answer
from aiservice.testing.fake_files import FileStore, not_found
from aiservice.testing.wire import Body, error_envelope

BATCHES_PATH = "/v1/batches"
# The endpoints whose lines the fake can answer (OpenAI's list, less images and videos).
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/moderations",
        "/v1/responses",
    }
)
COMPLETION_WINDOW = "24h"
SCENARIO_KEY = "fake_scenario"
LATENCY_KEY = "fake_latency_s"
SCENARIOS = frozenset({"slow", "partial", "expired", "failed"})
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
_WINDOW_S = 24 * 3600
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})

# Answers one line as its route would: (url, body) -> (HTTP status, JSON body).
LineAnswerer = Callable[[str, Body], tuple[int, Body]]


@dataclass(slots=True)
class LineResult:
    """One input line as the fake answered it, with the ids its output line carries."""

    custom_id: str
    status_code: int
    body: Body
    record_id: str  # batch_req_…
    request_id: str  # req_…

    @property
    def ok(self) -> bool:
        return self.status_code == 200


@dataclass(slots=True)
class FakeBatch:
    """One batch: its object as last read, and what decides how it moves on."""

    object: Body
    created: float  # time.time() at creation: the clock its latency runs on
    latency_s: float
    scenario: str | None
    results: list[LineResult]  # every line answered at creation, in input order
    errors: list[Body]  # validation errors: the batch fails at its first read
    done_at_cancel: int = 0


class BatchStore:
    """The batches created on the fake; safe from any thread."""

    def __init__(
        self, files: FileStore, answer_line: LineAnswerer, latency_s: Callable[[], float]
    ) -> None:
        self._files = files
        self._answer_line = answer_line
        self._latency_s = latency_s  # Behaviour.batch_latency_s, read at each creation
        self._lock = threading.Lock()
        self._batches: dict[str, FakeBatch] = {}
        self._serials = itertools.count(1)
        self._line_serials = itertools.count(1)

    def get(self, batch_id: str) -> Body | None:
        """The batch object as last read (reading it here does not move it on)."""
        with self._lock:
            batch = self._batches.get(batch_id)
            return None if batch is None else copy.deepcopy(batch.object)

    def clear(self) -> int:
        """Forget every batch; returns how many there were."""
        with self._lock:
            count = len(self._batches)
            self._batches.clear()
            return count

    # The HTTP routes.

    def create(self, body: Body) -> Answer:
        """`POST /v1/batches`: `validating`, with every line already answered."""
        refusal = _create_refusal(body)
        if refusal is not None:
            return refusal
        stored = self._files.get(body["input_file_id"])
        if stored is None:
            return not_found(f"No such File object: {body['input_file_id']}", "input_file_id")
        if stored.meta["purpose"] != "batch":
            message = "The input file must be uploaded with purpose batch."
            return error_answer(400, message, param="input_file_id")
        metadata = body.get("metadata") or {}
        scenario = metadata.get(SCENARIO_KEY)
        latency = metadata.get(LATENCY_KEY)
        requests, errors = read_requests(stored.content, body["endpoint"])
        if scenario == "failed" and not errors:
            errors = [_batch_error("Refused by the fake upstream (fake_scenario failed).", None, 1)]
        results = [] if errors else [self._answer(item, scenario) for item in requests]
        now = time.time()
        batch_id = f"batch_fake_{next(self._serials):06d}"
        model = requests[0]["body"].get("model") if requests else None
        batch = FakeBatch(
            _batch_object(batch_id, body, int(now), len(results), model),
            now,
            self._latency_s() if latency is None else float(latency),
            scenario,
            results,
            errors,
        )
        with self._lock:
            self._batches[batch_id] = batch
            return json_answer(copy.deepcopy(batch.object))

    def list_answer(self) -> Answer:
        """`GET /v1/batches`: every batch as last read, newest first, in one page."""
        with self._lock:
            batches = [copy.deepcopy(b.object) for b in reversed(self._batches.values())]
        return json_answer(
            {
                "object": "list",
                "data": batches,
                "first_id": batches[0]["id"] if batches else None,
                "last_id": batches[-1]["id"] if batches else None,
                "has_more": False,
            }
        )

    def route(self, method: str, path: str) -> Callable[[], Answer] | None:
        """The answer to a `/v1/batches/{id}[/cancel]` request; None when the method does
        not apply to the path (or the path is no such route)."""
        parsed = parse_batch_path(path)
        if parsed is None:
            return None
        batch_id, tail = parsed
        handlers = {("GET", ""): self._retrieve, ("POST", "cancel"): self._cancel}
        handler = handlers.get((method, tail))
        return None if handler is None else lambda: handler(batch_id)

    def _retrieve(self, batch_id: str) -> Answer:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _no_such_batch(batch_id)
            self._advance(batch, time.time())
            return json_answer(copy.deepcopy(batch.object))

    def _cancel(self, batch_id: str) -> Answer:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _no_such_batch(batch_id)
            status = batch.object["status"]
            if status in ("validating", "in_progress"):
                now = time.time()
                batch.done_at_cancel = _done_count(batch, now)  # what it keeps once cancelled
                batch.object.update(status="cancelling", cancelling_at=int(now))
            elif status not in ("cancelling", "cancelled"):
                message = f"Cannot cancel a batch with status {status}."
                return error_answer(409, message)
            return json_answer(copy.deepcopy(batch.object))

    # How a batch moves on.

    def _answer(self, item: Body, scenario: str | None) -> LineResult:
        custom_id = item["custom_id"]
        if scenario == "partial" and custom_id[-1] in "13579":
            message = f"Request {custom_id} failed (fake_scenario partial)."
            status, body = 400, error_envelope(400, message=message)
        else:
            status, body = self._answer_line(item["url"], item["body"])
        serial = next(self._line_serials)
        return LineResult(
            custom_id, status, body, f"batch_req_fake_{serial:06d}", f"req_fake_{serial:06d}"
        )

    def _advance(self, batch: FakeBatch, now: float) -> None:
        """One read's step: validating ends (failed or in_progress); in_progress ends once
        the latency has passed (completed, or expired); cancelling becomes cancelled."""
        status = batch.object["status"]
        if status == "validating" and batch.errors:
            errors = {"object": "list", "data": batch.errors}
            batch.object.update(status="failed", failed_at=int(now), errors=errors)
        elif status == "validating":
            batch.object.update(status="in_progress", in_progress_at=int(now))
            _tally(batch, batch.results[: _done_count(batch, now)])
        elif status == "in_progress" and now - batch.created >= batch.latency_s:
            self._finish(batch, "expired" if batch.scenario == "expired" else "completed", now)
        elif status == "in_progress":
            _tally(batch, batch.results[: _done_count(batch, now)])
        elif status == "cancelling":
            self._finish(batch, "cancelled", now)

    def _finish(self, batch: FakeBatch, status: str, now: float) -> None:
        """End a batch: its output and error files written, its counts and usage final."""
        total = len(batch.results)
        done = {"completed": total, "expired": total // 2, "cancelled": batch.done_at_cancel}
        executed = batch.results[: done[status]]
        failures = [_output_line(result) for result in executed if not result.ok]
        if status == "expired":
            failures += [_expired_line(result) for result in batch.results[done[status] :]]
        batch_id = batch.object["id"]
        successes = [_output_line(result) for result in executed if result.ok]
        batch.object.update(
            status=status,
            output_file_id=self._write(f"{batch_id}_output.jsonl", successes),
            error_file_id=self._write(f"{batch_id}_error.jsonl", failures),
        )
        _tally(batch, executed)
        batch.object["request_counts"]["failed"] = len(failures)  # expired lines included
        stamp = int(now)
        if status == "completed":
            batch.object.update(finalizing_at=stamp, completed_at=stamp)
        else:
            batch.object[f"{status}_at"] = stamp

    def _write(self, filename: str, lines: list[Body]) -> str | None:
        """A `batch_output` file of these JSONL lines; None (no file) when there are none."""
        if not lines:
            return None
        content = b"".join(dumps(line) + b"\n" for line in lines)
        return str(self._files.add(content, filename, "batch_output")["id"])


def parse_batch_path(path: str) -> tuple[str, str] | None:
    """(batch id, "" or "cancel") for `/v1/batches/{id}[/cancel]`; None for any other path."""
    rest = path.removeprefix(BATCHES_PATH + "/")
    if rest == path:
        return None
    batch_id, _, tail = rest.partition("/")
    if not batch_id or tail not in ("", "cancel"):
        return None
    return batch_id, tail


def read_requests(content: bytes, endpoint: str) -> tuple[list[Body], list[Body]]:
    """The requests of a JSONL input file, and the errors that fail the batch (each naming
    its line, counted from 1)."""
    requests: list[Body] = []
    errors: list[Body] = []
    seen: set[str] = set()
    for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        problem = _line_problem(item, endpoint, seen)
        if problem is not None:
            errors.append(_batch_error(*problem, line=number))
            continue
        seen.add(item["custom_id"])
        requests.append(item)
    if not requests and not errors:
        errors.append(_batch_error("The input file holds no requests.", None))
    return requests, errors


def _line_problem(item: Any, endpoint: str, seen: set[str]) -> tuple[str, str | None] | None:
    """What is wrong with one input line, and the parameter at fault; None if nothing."""
    if not isinstance(item, dict):
        return "This line is not a JSON object.", None
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id must be a non-empty string.", "custom_id"
    if custom_id in seen:
        return f"custom_id {custom_id} is used by an earlier line.", "custom_id"
    if item.get("method") != "POST":
        return "method must be POST.", "method"
    if item.get("url") != endpoint:
        return f"url must be the batch's endpoint, {endpoint}.", "url"
    if not isinstance(item.get("body"), dict):
        return "body must be a JSON object.", "body"
    return None


def _create_refusal(body: Body) -> Answer | None:
    """The 400 for a `POST /v1/batches` body the fake will not take; None when it will."""
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            return error_answer(400, f"Missing required parameter: '{name}'.", param=name)
    if body["endpoint"] not in BATCH_ENDPOINTS:
        message = f"endpoint must be one of {', '.join(sorted(BATCH_ENDPOINTS))}."
        return error_answer(400, message, param="endpoint")
    if body["completion_window"] != COMPLETION_WINDOW:
        return error_answer(400, "completion_window must be 24h.", param="completion_window")
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return error_answer(400, "metadata must map strings to strings.", param="metadata")
    scenario = metadata.get(SCENARIO_KEY)
    if scenario is not None and scenario not in SCENARIOS:
        message = f"{SCENARIO_KEY} must be one of {', '.join(sorted(SCENARIOS))}."
        return error_answer(400, message, param="metadata")
    latency = metadata.get(LATENCY_KEY)
    if latency is not None and not _seconds(latency):
        message = f"{LATENCY_KEY} must be a number of seconds, 0 or more."
        return error_answer(400, message, param="metadata")
    return None


def _seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def _batch_object(batch_id: str, body: Body, created: int, total: int, model: Any) -> Body:
    """A new batch's object (openai.types.Batch), `validating`."""
    batch: Body = {
        "id": batch_id,
        "object": "batch",
        "endpoint": body["endpoint"],
        "errors": None,
        "input_file_id": body["input_file_id"],
        "completion_window": body["completion_window"],
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": created,
        "in_progress_at": None,
        "expires_at": created + _WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "usage": _usage([]),
        "metadata": body.get("metadata"),
    }
    if isinstance(model, str):
        batch["model"] = model
    return batch


def _done_count(batch: FakeBatch, now: float) -> int:
    """How many lines a batch that has not ended has done: in proportion to the time passed
    for a `slow` one, none for the others (their lines all land when they end)."""
    if batch.scenario != "slow" or batch.latency_s <= 0:
        return 0
    total = len(batch.results)
    return min(total, int(total * (now - batch.created) / batch.latency_s))


def _tally(batch: FakeBatch, executed: list[LineResult]) -> None:
    """Set a batch's request counts and usage from the lines it has executed."""
    ok = [result for result in executed if result.ok]
    batch.object["request_counts"] = {
        "total": len(batch.results),
        "completed": len(ok),
        "failed": len(executed) - len(ok),
    }
    batch.object["usage"] = _usage(ok)


def _usage(results: list[LineResult]) -> Body:
    """The sum of the lines' usage: chat and text completions' prompt and completion
    tokens, the Responses' input and output tokens, the embeddings' prompt tokens."""
    input_tokens = output_tokens = 0
    for result in results:
        usage = result.body.get("usage")
        if isinstance(usage, dict):
            input_tokens += usage.get("input_tokens", usage.get("prompt_tokens", 0))
            output_tokens += usage.get("output_tokens", usage.get("completion_tokens", 0))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _output_line(result: LineResult) -> Body:
    response = {
        "status_code": result.status_code,
        "request_id": result.request_id,
        "body": result.body,
    }
    return {
        "id": result.record_id,
        "custom_id": result.custom_id,
        "response": response,
        "error": None,
    }


def _expired_line(result: LineResult) -> Body:
    error = {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    return {"id": result.record_id, "custom_id": result.custom_id, "response": None, "error": error}


def _batch_error(message: str, param: str | None, line: int | None = None) -> Body:
    return {"code": "invalid_request", "message": message, "param": param, "line": line}


def _no_such_batch(batch_id: str) -> Answer:
    return not_found(f"No such Batch object: {batch_id}", "batch_id")
