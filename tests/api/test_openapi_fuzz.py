"""schemathesis against a real server and its own OpenAPI document: every operation, with the
master key (the admins' document) and with a user's key (the public one), a few generated
cases each (CI-sized: benchmarks/fuzz.py runs many more). Every answer must be no 5xx, with a
declared status, content type, headers and a body valid against the declared schema.

The real embedded models answer the model routes; the generated bodies' token budgets are
capped and most of their model names made real (tests/fuzz_support.py says why). Hypothesis
is derandomized, so a run sends the same cases every time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiservice.api.openapi_operations import OPERATIONS
from fuzz_support import fuzz_operation, load_schema, operations
from support import MASTER_KEY, RunningServer, bearer, start_server, stop_server
from usage_support import new_account

# Positive cases per operation (and a third as many negative ones, at least one); the model
# routes get fewer, since each of their cases is a real generation.
EXAMPLES = 6
MODEL_EXAMPLES = 2
_LABELS = sorted(
    (method, re.sub(r"{(\w+):\w+}", r"{\1}", path), operation.model)
    for (method, path), operation in OPERATIONS.items()
)
CASES = [
    pytest.param(caller, f"{method} {path}", model, id=f"{caller}:{method} {path}")
    for caller in ("master", "user")
    for method, path, model in _LABELS
    if caller == "master" or not path.startswith("/v1/admin/")
]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(Path(tmp_path_factory.mktemp("fuzz")))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def callers(fuzzed_server: RunningServer) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
    """Each caller's credentials, and the schema of the document served to them."""
    found = {}
    for caller, key in (("master", MASTER_KEY), ("user", new_account(fuzzed_server, "fuzz").key)):
        headers = bearer(key)
        response = httpx.get(f"{fuzzed_server.base_url}/openapi.json", headers=headers)
        assert response.status_code == 200
        schema = load_schema(response.json(), fuzzed_server.base_url)
        found[caller] = (headers, {operation.label: operation for operation in operations(schema)})
    return found


@pytest.mark.parametrize(("caller", "label", "slow"), CASES)
def test_every_operation_answers_as_its_document_says(
    callers: dict[str, tuple[dict[str, str], dict[str, Any]]], caller: str, label: str, slow: bool
) -> None:
    headers, served = callers[caller]
    assert label in served, f"{label} is missing from the document served to {caller}"
    examples = MODEL_EXAMPLES if slow else EXAMPLES
    report = fuzz_operation(served[label], headers, examples)
    assert report.cases > 0
    assert not report.failures, "\n\n".join(report.failures[:3])
