"""The upstream fault matrix: every fault the project's fake upstream can inject (429 with and
without Retry-After, 500, 502, 503, a reset mid-body, a stall before the headers or mid-stream,
malformed JSON, a slow trickle within and past the timeouts), plus a connection refused, a
truncated SSE stream and a circuit already open, each through a plain, a streamed, a background
and a batch request, without and with a fallback.

Each case asserts what docs/operations.md ("Upstream faults: what a client sees") says it comes
to: what the client received, the attempts made (from /metrics, and as the upstream saw them,
with the waits between them), the circuit after it, and the usage ledger's one row. The
expectations are in tests/fault_matrix_expected.py, which also renders the document's table;
the last test checks that the document holds it as rendered.

One gateway serves the module, with one model per case (so that each case has a circuit of its
own) pointing at one FakeUpstream; every fallback is the model `backup`, on a FakeUpstream of its
own that never fails. Cases run one after the other: the fake's faults apply in order to
whatever request comes next. Combinations that mean nothing are not built: a stall mid-stream
or a truncated SSE stream in a request whose upstream answer is not streamed (plain, background
and batch requests are all asked of the upstream whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream
from fault_matrix_expected import expected, operations_table
from fault_matrix_support import (
    BACKUP,
    BACKUP_PRICES,
    FAULT_KINDS,
    PRICES,
    Gateway,
    TruncatingUpstream,
    Upstreams,
    cases,
    config_toml,
)
from support import ERROR_KEYS, MASTER_KEY, ROOT, start_server, stop_server

BATCH_DISCOUNT = 0.5  # the default: a batch line costs half


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with FakeUpstream() as primary, FakeUpstream() as backup, TruncatingUpstream() as cut:
        yield Upstreams(primary, backup, cut)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Gateway]:
    home: Path = tmp_path_factory.mktemp("fault-matrix")
    (home / "config.toml").write_text(config_toml(upstreams), encoding="utf-8")
    env = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None, "AISERVICE_WORKER_POLL_S": "0.1"}
    server = start_server(home, env=env)
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            sdk = OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
            yield Gateway(server, http, sdk, upstreams)
    finally:
        stop_server(server)


def _case_id(case: tuple[str, str, bool]) -> str:
    kind, mode, fallback = case
    return f"{kind}-{mode}-{'with-fallback' if fallback else 'alone'}"


CASES = list(cases())


@pytest.mark.parametrize(("kind", "mode", "fallback"), CASES, ids=[_case_id(c) for c in CASES])
def test_an_upstream_fault_comes_to_the_documented_outcome(
    gateway: Gateway, kind: str, mode: str, fallback: bool
) -> None:
    observed = gateway.run(kind, mode, fallback)
    want = expected(kind, mode, fallback)
    got = observed.received
    seen = f"observed: {observed}"
    # What the client received.
    assert (got.outcome, got.text, got.model) == (want.client, want.text, want.model), seen
    assert want.message in got.message and bool(got.message) == bool(want.message), seen
    if mode == "stream" and want.message:  # the stream's last event: OpenAI's error envelope
        assert set(got.body[-1]) == {"error"} and set(got.body[-1]["error"]) == ERROR_KEYS, seen
    # The attempts, as /metrics counts them and as the upstream saw them; the waits between.
    assert observed.attempts == want.attempts, seen
    assert (observed.upstream_saw, observed.backup_saw) == (want.upstream_saw, want.backup_saw)
    assert all(gap >= want.gap_s for gap in observed.gaps_s), seen
    if FAULT_KINDS[kind].where == "fake" and observed.upstream_saw > 0:
        assert observed.streamed == {mode == "stream"}, seen  # only a stream is streamed upstream
    # The circuits: the model's, and its host's.
    assert (observed.circuit, observed.host_circuit) == (want.circuit, want.host_circuit), seen
    # One ledger row, priced as the model that served.
    [row] = got.rows
    fields = ("status_code", "error_code", "upstream_attempts", "model_served")
    tokens = (row["input_tokens"], row["output_tokens"])
    assert (*(row[name] for name in fields), *tokens) == want.row, row
    assert (row["route"], row["background"]) == (want.route, mode in ("background", "batch"))
    prices = BACKUP_PRICES if row["model_served"] == BACKUP else PRICES
    cost = (tokens[0] * prices[0] + tokens[1] * prices[1]) / 1_000_000
    assert row["cost_usd"] == pytest.approx(cost * (BATCH_DISCOUNT if mode == "batch" else 1))


def test_the_operations_guide_holds_the_table_these_cases_assert() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## Upstream faults: what a client sees" in text
    assert operations_table() in text, "regenerate it: python tests/fault_matrix_expected.py"
