"""Circuit breakers per upstream host as well as per model: a host out of reach opens the
circuit every model on it shares, so a second model fails at once instead of waiting for its
own failures; an error the host answered (a 500) opens only that model's circuit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from support import MASTER_KEY, RunningServer, free_port, start_server, stop_server

GAUGE = "aiservice_circuit_breaker_state"  # 0 closed, 2 open
ATTEMPTS = "aiservice_upstream_attempts_total"


def _model(name: str, url: str) -> str:
    return (
        f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{url}"\n'
        "max_retries = 0\nbreaker_failures = 2\nbreaker_reset_s = 600\n"
    )


@pytest.fixture(scope="module")
def live() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, live: FakeUpstream):
    # Nothing listens on this port: every connection is refused.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    home: Path = tmp_path_factory.mktemp("host-circuit")
    models = [_model("dead-a", dead), _model("dead-b", dead)]
    models += [_model("live-c", live.base_url), _model("live-d", live.base_url)]
    (home / "config.toml").write_text("\n".join(models), encoding="utf-8")
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield server, dead
    stop_server(server)


def _chat(server: RunningServer, model: str) -> httpx.Response:
    return httpx.post(
        f"{server.api_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hello there"}]},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )


def _samples(server: RunningServer) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _attempts(samples: dict, model: str) -> float:
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == ATTEMPTS and ("model", model) in labels
    )


def _state(samples: dict, circuit: str) -> float:
    return samples[(GAUGE, frozenset({("upstream", circuit)}))]


def test_a_host_out_of_reach_opens_the_circuit_of_every_model_on_it(gateway) -> None:
    server, dead = gateway
    for _ in range(2):
        assert _chat(server, "dead-a").status_code == 503
    before = _samples(server)
    assert _state(before, f"{dead}#*") == 2  # the host's circuit: open
    assert _state(before, f"{dead}#dead-b") == 0  # dead-b itself never failed
    refused = _chat(server, "dead-b")
    assert refused.status_code == 503 and "circuit is open" in refused.json()["error"]["message"]
    assert _attempts(_samples(server), "dead-b") == _attempts(before, "dead-b") == 0


def test_an_error_the_host_answered_opens_only_that_models_circuit(
    gateway, live: FakeUpstream
) -> None:
    server, _ = gateway
    live.add_fault(Fault(status=500, times=2))
    for _ in range(2):
        assert _chat(server, "live-c").status_code == 503
    samples = _samples(server)
    assert _state(samples, f"{live.base_url}#live-c") == 2
    assert _state(samples, f"{live.base_url}#*") == 0
    assert _chat(server, "live-d").status_code == 200
