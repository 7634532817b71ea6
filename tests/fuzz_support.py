"""Fuzzing a running server against its own OpenAPI document with schemathesis: shared by
tests/api/test_openapi_fuzz.py (a few examples per operation) and benchmarks/fuzz.py (many).

Each operation gets `examples` generated cases that fit the document (positive) and a third
as many, at least one, that do not (negative), sent to the server with the given
credentials; every answer is checked: no 5xx, a declared status, a declared content type, a
body valid against the declared schema, the declared response headers. Failures are
collected, not raised, so one run reports them all.

Steering (`steer`), applied to every generated JSON body before it is sent:
- token budgets are capped (`max_tokens`, `max_completion_tokens` at 8, `max_output_tokens`
  at 16, the e-mail routes' `max_tokens` at 16, `n` and `best_of` at 2, a legacy completion's
  list of prompts at 2): the server bounds them only by the context window (and 2,048
  prompts), and a 135M model writing 8,000 tokens per case would make a CI-sized run take
  hours. The caps change how long an answer is, not which paths run;
- three `model` names out of four are replaced by a model the server serves, so that most
  cases get past the model lookup (a random name is a 404) into the real work. The fourth
  keeps the generated name: the 404 stays exercised.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
REQUEST_TIMEOUT_S = 120.0  # a case slower than this is a stall: reported as a failure
# The real model each route's generated `model` becomes (three times out of four).
_MODELS = {
    "/v1/chat/completions": "smollm2-135m-instruct",
    "/v1/completions": "smollm2-135m-instruct",
    "/v1/responses": "smollm2-135m-instruct",
    "/v1/responses/input_tokens": "smollm2-135m-instruct",
    "/v1/embeddings": "all-minilm-l6-v2",
    "/v1/moderations": "omni-moderation-latest",
    "/api/ai/chat/completions": "smollm2-135m-instruct",
    "/api/ai/documents/analyses": "smollm2-135m-instruct",
}
# The budget each model route gets when the case gives none (or a larger one).
_BUDGETS = {
    "/v1/chat/completions": "max_tokens",
    "/api/ai/chat/completions": "max_tokens",
    "/v1/completions": "max_tokens",
    "/v1/responses": "max_output_tokens",
}
_CAPS = {"max_tokens": 8, "max_completion_tokens": 8, "max_output_tokens": 16, "n": 2, "best_of": 2}
_EMAIL_PREFIX = "/api/ai/email/"


@dataclass
class OperationReport:
    label: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    refusals: Counter[str] = field(default_factory=Counter)  # the 4xx messages, shortened
    slowest: tuple[float, str] = (0.0, "")  # the slowest case: seconds, what was sent

    def status_summary(self) -> str:
        return " ".join(f"{status}:{count}" for status, count in sorted(self.statuses.items()))


def load_schema(document: dict[str, Any], base_url: str) -> Any:
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url)
    return schema


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def steer(path: str, body: Any) -> Any:
    """The generated body with its token budgets capped and most model names real (see the
    module's docstring for why)."""
    if not isinstance(body, dict):
        return body
    email = path.startswith(_EMAIL_PREFIX)
    caps = _CAPS | ({"max_tokens": 16} if email else {})
    for name, cap in caps.items():
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            body[name] = cap
    budget = "max_tokens" if email else _BUDGETS.get(path)
    if budget is not None and body.get(budget) is None:
        body[budget] = caps[budget]
    if path == "/v1/completions" and isinstance(body.get("prompt"), list):
        body["prompt"] = body["prompt"][:2]  # each prompt gets `n` generations of its own
    model = body.get("model")
    real = "smollm2-135m-instruct" if email else _MODELS.get(path)
    if real is not None and isinstance(model, str) and zlib.crc32(model.encode()) % 4:
        body["model"] = real
    return body


def fuzz_operation(
    operation: Any, headers: dict[str, str], examples: int, *, derandomize: bool = True
) -> OperationReport:
    """Send `examples` positive and `examples // 3` negative cases of `operation`."""
    report = OperationReport(operation.label)
    started = time.perf_counter()
    raw = operation.definition.raw
    # A route that takes nothing has no negative cases.
    negative = max(1, examples // 3) if raw.get("parameters") or raw.get("requestBody") else 0
    for mode, count in ((GenerationMode.POSITIVE, examples), (GenerationMode.NEGATIVE, negative)):
        if count:
            _run(operation, mode, count, headers, report, derandomize)
    report.seconds = time.perf_counter() - started
    return report


def _run(
    operation: Any,
    mode: GenerationMode,
    count: int,
    headers: dict[str, str],
    report: OperationReport,
    derandomize: bool,
) -> None:
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _send(case, headers, report)

    # Unsatisfiable: nothing of this mode can be generated (a negative case of a route
    # without parameters).
    with contextlib.suppress(Unsatisfiable):
        run()


def _send(case: Any, headers: dict[str, str], report: OperationReport) -> None:
    if case.media_type == "application/json":
        case.body = steer(case.path, case.body)
    report.cases += 1
    started = time.perf_counter()
    try:
        response = case.call(headers=headers, timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # a stall or a dropped connection: the server's fault here
        report.failures.append(
            f"{case.method} {case.formatted_path}: {type(exc).__name__}: {exc}\n"
            f"headers: {case.headers}\nbody: {json.dumps(case.body, default=str)[:4000]}"
        )
        return
    elapsed = time.perf_counter() - started
    if elapsed > report.slowest[0]:
        report.slowest = (elapsed, f"{case.formatted_path} {str(case.body)[:300]}")
    report.statuses[response.status_code] += 1
    if 400 <= response.status_code < 500:
        report.refusals[_refusal(response)] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except BaseException as exc:  # schemathesis' FailureGroup: the checks that failed
        if isinstance(exc, KeyboardInterrupt):
            raise
        report.failures.append(f"{case.method} {case.formatted_path}:\n{exc}")


def _refusal(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:60]
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f"{response.status_code} {str(message)[:60]}"
