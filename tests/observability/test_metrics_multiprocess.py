"""ServiceMetrics with PROMETHEUS_MULTIPROC_DIR (the children of `serve --workers N`): a scrape
answers the sum over the processes' files, each gauge combined by its mode, and a dead
process's live gauges are dropped while its counters stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiservice.observability.metrics import MULTIPROCESS_DIR_VARIABLE, ServiceMetrics

# One server process: `requests` requests answered, `in_flight` under way, the queue read.
PROCESS = """
import sys
from aiservice.observability.metrics import ServiceMetrics
requests, in_flight, queued = map(int, sys.argv[1:4])
metrics = ServiceMetrics()
for _ in range(requests):
    metrics.observe_http("/v1/models", 200, 0.01)
metrics.in_flight.inc(in_flight)
metrics.queue_depth.set(queued)
print("recorded", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""


def start_process(directory: Path, *values: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", PROCESS, *map(str, values)],
        env={**os.environ, MULTIPROCESS_DIR_VARIABLE: str(directory)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "recorded\n"
    return process


def end(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def values(text: str, name: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def no_jobs() -> int:
    return 0


def test_a_scrape_sums_the_processes_and_forgets_the_dead_ones_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive = start_process(tmp_path, 3, 2, 7)
    gone = start_process(tmp_path, 4, 5, 7)
    end(gone)  # a child that ended (or was killed) with 5 requests still counted in flight
    try:
        monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(tmp_path))
        text = asyncio.run(ServiceMetrics().render([], no_jobs)).decode()
        assert values(text, "aiservice_request_duration_seconds_count") == [7.0]  # 3 + 4
        assert values(text, "aiservice_in_flight_requests") == [2.0]  # the living one's only
        assert values(text, "aiservice_background_queue_depth") == [7.0]  # not 14: one queue
        assert "pid=" not in text
        files = {path.name for path in tmp_path.iterdir()}
        assert f"gauge_livesum_{gone.pid}.db" not in files
        assert f"gauge_livesum_{alive.pid}.db" in files
        assert f"histogram_{gone.pid}.db" in files  # its requests stay in the totals
    finally:
        end(alive)


def test_without_the_variable_each_app_has_its_own_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_http("/v1/models", 200, 0.01)
    text = asyncio.run(second.render([], no_jobs)).decode()
    assert values(text, "aiservice_request_duration_seconds_count") == []
    text = asyncio.run(first.render([], no_jobs)).decode()
    assert values(text, "aiservice_request_duration_seconds_count") == [1.0]
