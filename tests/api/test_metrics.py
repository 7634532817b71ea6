"""GET /metrics against real servers: the Prometheus text parsed with prometheus-client's own
parser, every request observed once, tokens and cost as the usage says, upstream attempts,
retries and the breaker from the fake upstream, in-flight requests and the job queue.

A scrape is a snapshot of cumulative counters: each test compares two scrapes, before and
after its requests. A model request is observed when its usage record is taken, just after its
response has been sent, so a test first polls until the count it expects has arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from aiservice.app import create_app
from aiservice.settings import Settings
from aiservice.testing.fake_upstream import FakeUpstream, Fault
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    start_server,
    stop_server,
    wait_until,
)

LOCAL = "smollm2-135m-instruct"
CHAT = "/v1/chat/completions"
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
# USD per million tokens: large, so that a few tokens cost a visible amount.
LOCAL_PRICES = (1000.0, 3000.0)
UP_PRICES = (200.0, 800.0)
# The fake upstream counts "hello there" as 2 prompt tokens and answers in 5.
UP_INPUT, UP_OUTPUT = 2, 5

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def models_toml(upstream_url: str, *, local: bool = True) -> str:
    entries = []
    if local:
        entries.append(
            f'[[models]]\nname = "{LOCAL}"\n'
            f"price_input_per_1m = {LOCAL_PRICES[0]}\nprice_output_per_1m = {LOCAL_PRICES[1]}\n"
        )
    entries += [
        f'[[models]]\nname = "up"\nprovider = "openai"\nbase_url = "{upstream_url}"\n'
        f"max_retries = 2\n"
        f"price_input_per_1m = {UP_PRICES[0]}\nprice_output_per_1m = {UP_PRICES[1]}\n",
        # Opens after two failed attempts and stays open for the rest of the module.
        f'[[models]]\nname = "up-breaker"\nprovider = "openai"\nbase_url = "{upstream_url}"\n'
        "max_retries = 0\nbreaker_failures = 2\nbreaker_reset_s = 600\n",
    ]
    return "\n".join(entries)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean_upstream(upstream: FakeUpstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-metrics")
    (home / "config.toml").write_text(models_toml(upstream.base_url), encoding="utf-8")
    server = start_server(home, env=NO_DATABASE_URL)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def http(gateway: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60
    ) as client:
        yield client


def scrape(http: httpx.Client) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    response = http.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_for_delta(
    http: httpx.Client, before: Samples, expected: float, name: str, **labels: str
) -> Samples:
    """Scrape until the sample has grown by `expected` since `before`; returns that scrape."""

    def reached() -> Samples | None:
        after = scrape(http)
        return after if delta(before, after, name, **labels) >= expected else None

    after = wait_until(reached, timeout=30, what=f"{name}{labels} to grow by {expected}")
    assert delta(before, after, name, **labels) == expected, (name, labels)
    return after


def chat(model: str = "up", text: str = "hello there", **fields: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def cost(input_tokens: int, output_tokens: int, prices: tuple[float, float]) -> float:
    return (input_tokens * prices[0] + output_tokens * prices[1]) / 1_000_000


DURATION = "aiservice_request_duration_seconds_count"


def test_the_text_is_prometheus_with_every_metric_prefixed(http):
    samples = scrape(http)
    names = {name for name, _ in samples}
    assert names and all(name.startswith("aiservice_") for name in names), names
    for expected in (
        "aiservice_in_flight_requests",
        "aiservice_background_queue_depth",
        "aiservice_circuit_breaker_state",
    ):
        assert expected in names, names


def test_plain_and_streamed_requests_count_once_with_their_tokens_and_cost(http):
    labels = {"route": CHAT, "model": "up", "status": "200"}
    before = scrape(http)
    assert http.post(CHAT, json=chat()).status_code == 200
    with http.stream("POST", CHAT, json=chat(stream=True)) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    after = wait_for_delta(http, before, 2, DURATION, **labels)
    assert delta(before, after, "aiservice_request_duration_seconds_sum", **labels) > 0
    # Observed from their usage records only, not by the middleware as well.
    assert delta(before, after, DURATION, route=CHAT, model="", status="200") == 0
    # Both requests had a first token; +Inf holds every observation.
    ttft = {"route": CHAT, "model": "up"}
    assert delta(before, after, "aiservice_time_to_first_token_seconds_count", **ttft) == 2
    up_tokens = "aiservice_tokens_total"
    assert delta(before, after, up_tokens, model="up", kind="input") == 2 * UP_INPUT
    assert delta(before, after, up_tokens, model="up", kind="output") == 2 * UP_OUTPUT
    assert delta(before, after, "aiservice_cost_usd_total", model="up") == pytest.approx(
        2 * cost(UP_INPUT, UP_OUTPUT, UP_PRICES)
    )
    # One attempt each, both good: no retry.
    attempts = {"model": "up", "outcome": "ok"}
    assert (
        sum(
            after[key] - before.get(key, 0)
            for key in after
            if key[0] == "aiservice_upstream_attempts_total"
            and attempts.items() <= dict(key[1]).items()
        )
        == 2
    )
    assert delta(before, after, "aiservice_upstream_retries_total", model="up") == 0


def test_a_local_model_is_priced_from_its_usage(http):
    labels = {"route": CHAT, "model": LOCAL, "status": "200"}
    before = scrape(http)
    response = http.post(CHAT, json=chat(LOCAL, "Say hi.", max_tokens=4, temperature=0))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    after = wait_for_delta(http, before, 1, DURATION, **labels)
    tokens = "aiservice_tokens_total"
    assert delta(before, after, tokens, model=LOCAL, kind="input") == usage["prompt_tokens"]
    assert delta(before, after, tokens, model=LOCAL, kind="output") == usage["completion_tokens"]
    assert delta(before, after, "aiservice_cost_usd_total", model=LOCAL) == pytest.approx(
        cost(usage["prompt_tokens"], usage["completion_tokens"], LOCAL_PRICES)
    )


def test_failed_model_requests_count_as_errors_with_their_code(http, upstream):
    before = scrape(http)
    missing = http.post(CHAT, json=chat("no-such-model"))
    assert missing.status_code == 404
    # Every attempt fails: three attempts (two retries), then 503.
    upstream.add_fault(Fault(status=500, times=3))
    failing = http.post(CHAT, json=chat())
    assert failing.status_code == 503, failing.text
    after = wait_for_delta(http, before, 1, DURATION, route=CHAT, model="up", status="503")
    # The unknown model is not a label value: what a client names is unbounded.
    assert delta(before, after, DURATION, route=CHAT, model="", status="404") == 1
    errors = "aiservice_errors_total"
    assert delta(before, after, errors, route=CHAT, model="", code="model_not_found") == 1
    assert delta(before, after, errors, route=CHAT, model="up", code="upstream_unavailable") == 1
    failed_attempts = [
        after[key] - before.get(key, 0)
        for key in after
        if key[0] == "aiservice_upstream_attempts_total"
        and dict(key[1])["model"] == "up"
        and dict(key[1])["outcome"] == "HTTP 500"
    ]
    assert sum(failed_attempts) == 3
    assert delta(before, after, "aiservice_upstream_retries_total", model="up") == 2
    assert not any(
        name.endswith("_total") and "no-such-model" in str(labels) for name, labels in after
    )


def test_a_429_then_success_is_one_retry(http, upstream):
    upstream.add_fault(Fault(status=429, retry_after=0, times=1))
    before = scrape(http)
    assert http.post(CHAT, json=chat()).status_code == 200
    after = wait_for_delta(http, before, 1, DURATION, route=CHAT, model="up", status="200")
    assert delta(before, after, "aiservice_upstream_retries_total", model="up") == 1
    upstream_url = upstream.base_url
    for outcome in ("HTTP 429", "ok"):
        labels = {"model": "up", "upstream": upstream_url, "outcome": outcome}
        assert delta(before, after, "aiservice_upstream_attempts_total", **labels) == 1, outcome


def test_an_upstream_refusal_is_one_attempt_without_retry_or_breaker_mark(http, upstream):
    circuit = {"upstream": f"{upstream.base_url}#up"}
    for status, client_status in ((400, 400), (401, 502), (403, 502)):
        upstream.add_fault(Fault(status=status, times=1))
        before = scrape(http)
        answer = http.post(CHAT, json=chat())
        assert answer.status_code == client_status, answer.text
        after = wait_for_delta(
            http, before, 1, DURATION, route=CHAT, model="up", status=str(client_status)
        )
        labels = {"model": "up", "upstream": upstream.base_url, "outcome": f"HTTP {status}"}
        assert delta(before, after, "aiservice_upstream_attempts_total", **labels) == 1
        assert delta(before, after, "aiservice_upstream_retries_total", model="up") == 0
        assert value(after, "aiservice_circuit_breaker_state", **circuit) == 0  # closed


def test_the_breaker_state_shows_an_open_circuit(http, upstream):
    circuit = {"upstream": f"{upstream.base_url}#up-breaker"}
    gauge = "aiservice_circuit_breaker_state"
    assert value(scrape(http), gauge, **circuit) == 0  # closed
    upstream.add_fault(Fault(status=500, times=2))
    for _ in range(2):
        assert http.post(CHAT, json=chat("up-breaker")).status_code == 503
    assert value(scrape(http), gauge, **circuit) == 2  # open
    # Open: the next request fails at once, without an attempt.
    before = scrape(http)
    assert http.post(CHAT, json=chat("up-breaker")).status_code == 503
    after = wait_for_delta(http, before, 1, DURATION, route=CHAT, model="up-breaker", status="503")
    assert not [
        key
        for key in after
        if key[0] == "aiservice_upstream_attempts_total"
        and dict(key[1])["model"] == "up-breaker"
        and after[key] != before.get(key, 0)
    ]
    assert value(scrape(http), gauge, **{"upstream": f"{upstream.base_url}#up"}) == 0


def test_other_routes_are_labelled_by_their_template(http):
    before = scrape(http)
    assert http.get("/v1/models").status_code == 200
    assert http.get("/v1/responses/resp_does_not_exist").status_code == 404
    assert http.get("/v1/responses/resp_another_one").status_code == 404
    assert http.get("/no/such/path/abc123").status_code == 404
    after = wait_for_delta(http, before, 1, DURATION, route="unmatched", model="", status="404")
    assert delta(before, after, DURATION, route="/v1/models", model="", status="200") == 1
    by_id = {"route": "/v1/responses/{response_id}", "model": ""}
    assert delta(before, after, DURATION, **by_id, status="404") == 2
    errors = "aiservice_errors_total"
    assert delta(before, after, errors, **by_id, code="http_404") == 2
    assert delta(before, after, errors, route="unmatched", model="", code="http_404") == 1
    # A scrape is observed too, as a request like any other.
    assert delta(before, after, DURATION, route="/metrics", model="", status="200") >= 1
    assert not any(
        "resp_does_not_exist" in str(labels) or "abc123" in str(labels) for _, labels in after
    )


def test_in_flight_counts_a_request_until_its_answer_ends(http, upstream):
    gauge = "aiservice_in_flight_requests"
    # The scrape itself is in flight while it renders.
    wait_until(lambda: value(scrape(http), gauge) == 1, timeout=10, what="1 in flight")
    upstream.add_fault(Fault(first_byte_delay_s=3))
    slow = threading.Thread(target=lambda: http.post(CHAT, json=chat()))
    slow.start()
    try:
        wait_until(lambda: value(scrape(http), gauge) == 2, timeout=10, what="2 in flight")
    finally:
        slow.join()
    wait_until(lambda: value(scrape(http), gauge) == 1, timeout=10, what="1 in flight")


def test_a_background_job_is_observed_once_under_its_own_route(http):
    before = scrape(http)
    body = {"model": "up", "input": "hello there", "background": True}
    queued = http.post("/v1/responses", json=body)
    assert queued.status_code == 200, queued.text
    job = {"route": "/v1/responses:background", "model": "up", "status": "200"}
    after = wait_for_delta(http, before, 1, DURATION, **job)
    # The request that queued it is an HTTP request of its own, without a model.
    assert delta(before, after, DURATION, route="/v1/responses", model="", status="200") == 1
    assert delta(before, after, DURATION, route="/v1/responses", model="up", status="200") == 0
    tokens = "aiservice_tokens_total"
    assert delta(before, after, tokens, model="up", kind="output") == UP_OUTPUT


# -- the job queue, on both storage backends ----------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def queue_only(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
) -> Iterator[RunningServer]:
    """`serve --no-worker` with an upstream model only: jobs stay queued."""
    env = dict(NO_DATABASE_URL)
    if request.param == "postgres":
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        env["DATABASE_URL"] = databases.create()
    home: Path = tmp_path_factory.mktemp(f"metrics-queue-{request.param}")
    (home / "config.toml").write_text(models_toml(upstream.base_url, local=False), "utf-8")
    server = start_server(home, env=env, args=["--no-worker"])
    yield server
    stop_server(server)


def test_the_queue_depth_counts_the_queued_jobs(queue_only):
    with httpx.Client(
        base_url=queue_only.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60
    ) as client:
        depth = "aiservice_background_queue_depth"
        assert value(scrape(client), depth) == 0
        body = {"model": "up", "input": "hello there", "background": True}
        ids = []
        for _ in range(3):
            queued = client.post("/v1/responses", json=body)
            assert queued.status_code == 200 and queued.json()["status"] == "queued", queued.text
            ids.append(queued.json()["id"])
        assert value(scrape(client), depth) == 3
        assert client.post(f"/v1/responses/{ids[0]}/cancel").status_code == 200
        assert value(scrape(client), depth) == 2


# -- settings -----------------------------------------------------------------------------------


def test_metrics_can_be_turned_off(tmp_path):
    app = create_app(Settings(home=tmp_path, metrics_enabled=False), worker=False)
    # Without its lifespan: no model is loaded, and a 404 needs none.
    response = TestClient(app).get("/metrics")
    assert response.status_code == 404
