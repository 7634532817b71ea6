"""Background mode of the Responses API (`background: true`): the job queue and its workers.

A background request returns at once with a `queued` response; a worker (in the server's own
process by default, or `aiservice worker` beside a `serve --no-worker`) takes the job, runs it
and stores the outcome, which clients poll with GET /v1/responses/{id}. Cancel stops a queued or
running job. Jobs live in the database with a lease: a worker that is killed leaves its job to be
taken over once the lease expires (a later attempt), one that is stopped gracefully hands it back
at once, and a job that has been started too often ends `failed` rather than running forever.

Everything here is observed from outside: the HTTP API (official SDK and raw bodies checked
against OpenAI's spec) and the JSON log lines of the server and worker processes ("background
job started" / "background job finished", "generation cancelled", "worker started").

A "long job" is a request whose structured output forces hundreds of long strings: even this
tiny model needs many seconds for it, so it is reliably still running when a test cancels it or
kills its process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    run_cli,
    start_server,
    stop_server,
    wait_for_log_line,
    wait_until,
)

URL = "/v1/responses"
MODEL = "gpt-4o-mini"
# Whatever the test process's environment says, these servers use the SQLite file in their home.
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
TERMINAL = {"completed", "incomplete", "failed", "cancelled"}
STARTED = "background job started"
FINISHED = "background job finished"

# A short job: greedy, it ends by itself after about ten tokens, well within a second.
SHORT: dict[str, Any] = {
    "model": MODEL,
    "input": "What is 2+2?",
    "temperature": 0,
    "max_output_tokens": 24,
}
# A long job: strict structured output that demands 300 strings of 30+ characters. Constrained
# sampling makes this model slow: measured on 2 CPUs, 300 tokens take about 10 s and 4000 about
# four minutes (a foreground request, each ending `incomplete` at max_output_tokens).
LONG_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "name": "long",
    "schema": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 300,
                "items": {"type": "string", "minLength": 30},
            }
        },
        "required": ["items"],
        "additionalProperties": False,
    },
    "strict": True,
}


# Jobs a test restarts must be long enough to be killed mid-run, short enough to be run again.
RESTARTED_TOKENS = 300


def long_job(max_output_tokens: int = 4000) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": "List three hundred different facts about lighthouses.",
        "max_output_tokens": max_output_tokens,
        "text": {"format": LONG_FORMAT},
    }


# --- processes ----------------------------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    """JSON log lines of a process, a non-JSON line as {"raw": line} (as RunningServer does)."""
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"raw": raw})
    return lines


@dataclass
class RunningWorker:
    """An `aiservice worker` process; `log_lines` makes it usable with wait_for_log_line."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_lines(self) -> list[dict]:
        return read_log(self.log_path)


def process_env(home: Path, env: dict[str, str | None] | None) -> dict[str, str]:
    """What start_server gives its server: the test's environment, the home and the master key,
    then `env` on top (a None value removes that variable)."""
    merged: dict[str, str | None] = {
        **os.environ,
        "AISERVICE_HOME": str(home),
        "AISERVICE_MASTER_KEY": MASTER_KEY,
        **(env or {}),
    }
    return {name: value for name, value in merged.items() if value is not None}


def start_worker(
    home: Path, log_path: Path, *, env: dict[str, str | None] | None = None
) -> RunningWorker:
    """Start `aiservice worker` and wait for its "worker started" line (the model is loaded)."""
    home.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice", "worker"],
        env=process_env(home, env),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = RunningWorker(process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{log_path.read_text()}")
        return any(line.get("message") == "worker started" for line in worker.log_lines())

    try:
        wait_until(ready, timeout=120, what="the worker's 'worker started' line")
    except BaseException:
        stop_worker(worker)
        raise
    return worker


def stop_worker(worker: RunningWorker, sig: int = signal.SIGTERM) -> int | None:
    """Signal the worker and wait for it; returns its exit status, None if it had to be killed."""
    if worker.process.poll() is None:
        worker.process.send_signal(sig)
    try:
        return worker.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
        return None


def kill(server: RunningServer) -> None:
    """SIGKILL: the process gets no chance to hand anything back."""
    server.process.kill()
    server.process.wait()


def raw_client(server: RunningServer, timeout: float = 120) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=timeout,
    )


def sdk_client(server: RunningServer, timeout: float = 120) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=timeout)


# --- API helpers --------------------------------------------------------------------------------


def create_background(http: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
    """POST a background request; assert the immediate answer is a queued, schema-valid Response."""
    response = http.post(URL, json={**params, "background": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "Response")
    assert body["status"] == "queued", body
    assert body["background"] is True, body
    assert body["output"] == [], body
    return body


def retrieve(http: httpx.Client, response_id: str) -> dict[str, Any]:
    response = http.get(f"{URL}/{response_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, "Response")
    return body


def cancel(http: httpx.Client, response_id: str) -> httpx.Response:
    return http.post(f"{URL}/{response_id}/cancel")


def first_text_delta(lines: Iterator[str]) -> tuple[dict[str, Any], str | None]:
    """Read a background stream up to the model's first text: (the response as created, that
    text), or (the response, None) if the stream ends without any."""
    created: dict[str, Any] = {}
    for line in lines:
        if not line.startswith("data:"):
            continue
        event = json.loads(line[len("data:") :])
        if event["type"] == "response.created":
            created = event["response"]
        elif event["type"] == "response.output_text.delta" and event["delta"]:
            return created, event["delta"]
    return created, None


def wait_for_status(
    http: httpx.Client, response_id: str, statuses: set[str], *, timeout: float = 60
) -> dict[str, Any]:
    """Poll the response until its status is one of `statuses`; return that body."""

    def reached() -> dict[str, Any] | None:
        body = retrieve(http, response_id)
        return body if body["status"] in statuses else None

    return wait_until(
        reached, timeout=timeout, what=f"response {response_id} to become {sorted(statuses)}"
    )


def wait_terminal(http: httpx.Client, response_id: str, *, timeout: float = 60) -> dict[str, Any]:
    return wait_for_status(http, response_id, TERMINAL, timeout=timeout)


def assert_finished_well(body: dict[str, Any]) -> None:
    """A job left to run (not cancelled) ends completed, incomplete (cut by max_output_tokens)
    or failed with an error object, and its body is a valid Response: never stuck half-way."""
    assert_matches_schema(body, "Response")
    assert body["status"] in {"completed", "incomplete", "failed"}, body
    if body["status"] == "failed":
        assert body["error"] and body["error"]["message"], body
    else:
        assert body["error"] is None, body
        assert body["output"], body
        assert body["usage"]["output_tokens"] > 0, body
    if body["status"] == "incomplete":
        assert body["incomplete_details"] == {"reason": "max_output_tokens"}, body


def log_entries(source: Any, message: str, response_id: str) -> list[dict]:
    """The log lines of a server or worker with this message about this response."""
    return [
        line
        for line in source.log_lines()
        if line.get("message") == message and line.get("response_id") == response_id
    ]


def started_lines(source: Any, response_id: str) -> list[dict]:
    return log_entries(source, STARTED, response_id)


def wait_for_start(source: Any, response_id: str, attempt: int, *, timeout: float = 60) -> dict:
    """The "background job started" line of this attempt at this response."""
    return wait_for_log_line(
        source,
        lambda line: (
            line.get("message") == STARTED
            and line.get("response_id") == response_id
            and line.get("attempt") == attempt
        ),
        timeout=timeout,
        what=f"attempt {attempt} at {response_id} to start",
    )


def output_text(body: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


# --- servers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with its in-process worker (the default), on its own SQLite home."""
    running = start_server(tmp_path_factory.mktemp("background"), env=NO_DATABASE_URL)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def bg_http(bg_server: RunningServer) -> Iterator[httpx.Client]:
    with raw_client(bg_server) as raw:
        yield raw


@pytest.fixture(scope="module")
def bg_client(bg_server: RunningServer) -> OpenAI:
    return sdk_client(bg_server)


@pytest.fixture(scope="module")
def queue_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`serve --no-worker`: background requests are accepted and stay queued."""
    running = start_server(
        tmp_path_factory.mktemp("no-worker"), env=NO_DATABASE_URL, args=["--no-worker"]
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def queue_only_http(queue_only_server: RunningServer) -> Iterator[httpx.Client]:
    with raw_client(queue_only_server) as raw:
        yield raw


# --- lifecycle ----------------------------------------------------------------------------------


def test_a_background_response_is_queued_at_once_then_completes(
    bg_server: RunningServer, bg_http: httpx.Client
) -> None:
    created = create_background(bg_http, SHORT)
    assert created["id"].startswith("resp_"), created
    assert created["error"] is None, created

    done = wait_terminal(bg_http, created["id"])
    assert done["status"] == "completed", done
    assert_finished_well(done)
    assert done["id"] == created["id"] and done["created_at"] == created["created_at"], done
    assert done["background"] is True, done
    assert output_text(done).strip(), done
    usage = done["usage"]
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= SHORT["max_output_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"], usage

    # The worker said when it took the job and how it ended.
    (start,) = started_lines(bg_server, created["id"])
    assert start["attempt"] == 1, start
    assert isinstance(start["worker"], str) and start["worker"], start
    assert isinstance(start["waited_ms"], int | float) and start["waited_ms"] >= 0, start
    finish = wait_for_log_line(
        bg_server,
        lambda line: line.get("message") == FINISHED and line.get("response_id") == created["id"],
        timeout=10,
        what="the job's 'background job finished' line",
    )
    assert finish["status"] == "completed", finish


def test_a_completed_background_response_has_the_shape_of_a_foreground_one(
    bg_http: httpx.Client,
) -> None:
    foreground = bg_http.post(URL, json=SHORT)
    assert foreground.status_code == 200, foreground.text
    foreground_body = foreground.json()
    assert_matches_schema(foreground_body, "Response")
    assert not foreground_body["background"], foreground_body

    done = wait_terminal(bg_http, create_background(bg_http, SHORT)["id"])
    assert_matches_schema(done, "Response")
    assert set(done) == set(foreground_body)
    assert [item["type"] for item in done["output"]] == [
        item["type"] for item in foreground_body["output"]
    ]
    assert set(done["usage"]) == set(foreground_body["usage"])


def test_the_sdk_creates_polls_and_lists_input_items_of_a_background_response(
    bg_client: OpenAI, bg_http: httpx.Client
) -> None:
    created = bg_client.responses.create(**SHORT, background=True)
    assert created.status == "queued" and created.background is True and created.output == []

    def finished() -> Any:
        response = bg_client.responses.retrieve(created.id)
        return response if response.status in TERMINAL else None

    done = wait_until(finished, timeout=60, what="the SDK to see the response finish")
    assert done.status == "completed", done
    assert done.output_text.strip()
    assert done.usage is not None and done.usage.output_tokens > 0

    items = list(bg_client.responses.input_items.list(created.id))
    assert len(items) == 1, items
    assert items[0].type == "message" and items[0].role == "user", items
    assert [part.text for part in items[0].content] == [SHORT["input"]], items  # type: ignore[union-attr]
    raw = bg_http.get(f"{URL}/{created.id}/input_items")
    assert raw.status_code == 200, raw.text
    assert_matches_schema(raw.json(), "ResponseItemList")


def test_a_background_response_cut_by_max_output_tokens_ends_incomplete(
    bg_http: httpx.Client,
) -> None:
    done = wait_terminal(bg_http, create_background(bg_http, long_job(20))["id"])
    assert done["status"] == "incomplete", done
    assert_finished_well(done)
    assert done["usage"]["output_tokens"] == 20, done["usage"]


def test_background_without_store_is_refused(bg_http: httpx.Client) -> None:
    response = bg_http.post(URL, json={**SHORT, "background": True, "store": False})
    assert_error_envelope(response, 400, param="background")


def test_the_sdk_sees_the_refusal_of_background_without_store(bg_client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        bg_client.responses.create(**SHORT, background=True, store=False)
    assert refused.value.body["param"] == "background"  # type: ignore[index]


# --- cancel -------------------------------------------------------------------------------------


def test_cancelling_a_running_job_stops_its_generation(
    bg_server: RunningServer, bg_http: httpx.Client
) -> None:
    before = len(bg_server.log_lines())
    # Streamed, so that the cancel is sent once the model is producing text (see below).
    request = {**long_job(), "background": True, "stream": True}
    with bg_http.stream("POST", URL, json=request) as streaming:
        assert streaming.status_code == 200, streaming.read().decode()
        created, delta = first_text_delta(streaming.iter_lines())
        assert delta, "the stream ended before the model produced any text"
        cancelled = cancel(bg_http, created["id"])
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert_matches_schema(body, "Response")
    assert body["id"] == created["id"] and body["status"] == "cancelled", body

    # The model stops within a second or so: its provider says so, and the job's end is logged.
    wait_for_log_line(
        bg_server,
        lambda line: line.get("message") == "generation cancelled",
        after=before,
        timeout=5,
        what="'generation cancelled' after the cancel",
    )
    # The job's end did not overwrite the cancellation.
    assert retrieve(bg_http, created["id"])["status"] == "cancelled"

    # The model is free again: a short request does not wait behind the long generation (which
    # would take far longer than this client's 15 s timeout).
    with raw_client(bg_server, timeout=15) as quick:
        response = quick.post(URL, json=SHORT)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in {"completed", "incomplete"}, response.json()
    assert retrieve(bg_http, created["id"])["status"] == "cancelled"

    # Like every job's end, the cancellation is logged.
    finish = wait_for_log_line(
        bg_server,
        lambda line: line.get("message") == FINISHED and line.get("response_id") == created["id"],
        after=before,
        timeout=5,
        what="the cancelled job's 'background job finished' line",
    )
    assert finish["status"] == "cancelled", finish


def test_cancelling_a_queued_job_and_cancelling_it_again(queue_only_http: httpx.Client) -> None:
    created = create_background(queue_only_http, SHORT)
    assert retrieve(queue_only_http, created["id"])["status"] == "queued"

    first = cancel(queue_only_http, created["id"])
    assert first.status_code == 200, first.text
    body = first.json()
    assert_matches_schema(body, "Response")
    assert body["id"] == created["id"] and body["status"] == "cancelled", body
    assert body["output"] == [], body

    again = cancel(queue_only_http, created["id"])
    assert again.status_code == 200, again.text
    assert again.json() == body
    assert retrieve(queue_only_http, created["id"]) == body


def test_the_sdk_cancels_a_queued_job(queue_only_server: RunningServer) -> None:
    client = sdk_client(queue_only_server)
    created = client.responses.create(**SHORT, background=True)
    assert created.status == "queued"
    cancelled = client.responses.cancel(created.id)
    assert cancelled.id == created.id and cancelled.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"


def test_a_queued_job_waits_for_a_worker_on_a_no_worker_server(
    queue_only_server: RunningServer, queue_only_http: httpx.Client
) -> None:
    """No worker, no start: the job is still queued once a later request has been answered."""
    created = create_background(queue_only_http, SHORT)
    # A foreground request goes through the server's model; by the time it is answered an
    # in-process worker (if there wrongly were one) would long have taken the queued job.
    foreground = queue_only_http.post(URL, json=SHORT)
    assert foreground.status_code == 200, foreground.text
    assert retrieve(queue_only_http, created["id"])["status"] == "queued"
    assert not started_lines(queue_only_server, created["id"])
    assert cancel(queue_only_http, created["id"]).json()["status"] == "cancelled"


def test_cancelling_a_completed_response_returns_it_unchanged(bg_http: httpx.Client) -> None:
    done = wait_terminal(bg_http, create_background(bg_http, SHORT)["id"])
    assert done["status"] == "completed", done
    response = cancel(bg_http, done["id"])
    assert response.status_code == 200, response.text
    assert_matches_schema(response.json(), "Response")
    assert response.json() == done
    assert retrieve(bg_http, done["id"]) == done


def test_cancelling_a_foreground_response_is_refused(bg_http: httpx.Client) -> None:
    foreground = bg_http.post(URL, json=SHORT)
    assert foreground.status_code == 200, foreground.text
    response_id = foreground.json()["id"]
    assert_error_envelope(cancel(bg_http, response_id), 400)
    assert retrieve(bg_http, response_id)["status"] == foreground.json()["status"]


def test_cancelling_an_unknown_response_is_a_404(bg_http: httpx.Client) -> None:
    assert_error_envelope(cancel(bg_http, "resp_" + "0" * 48), 404)


def test_the_sdk_raises_not_found_on_cancelling_an_unknown_response(bg_client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        bg_client.responses.cancel("resp_" + "1" * 48)


# --- separate worker processes ------------------------------------------------------------------


def test_the_cli_has_the_worker_command_and_the_no_worker_flag(tmp_path: Path) -> None:
    serve = run_cli("serve", "--help", home=tmp_path)
    assert serve.returncode == 0, serve.stderr
    assert "--no-worker" in serve.stdout
    worker = run_cli("worker", "--help", home=tmp_path)
    assert worker.returncode == 0, worker.stderr


def test_a_worker_process_runs_the_jobs_of_a_no_worker_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, env=NO_DATABASE_URL, args=["--no-worker"])
    worker = None
    try:
        with raw_client(server) as http:
            waiting = create_background(http, SHORT)  # queued before any worker exists
            worker = start_worker(home, tmp_path / "worker.log", env=NO_DATABASE_URL)
            later = create_background(http, SHORT)
            for created in (waiting, later):
                done = wait_terminal(http, created["id"])
                assert done["status"] == "completed", done
                assert_finished_well(done)
                (start,) = started_lines(worker, created["id"])
                assert start["attempt"] == 1, start
                assert not started_lines(server, created["id"])
    finally:
        status = stop_worker(worker) if worker else 0
        stop_server(server)
    # SIGTERM stops an idle worker cleanly.
    assert status == 0, worker.log_path.read_text() if worker else ""
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_cancel_on_the_api_server_stops_a_job_running_in_a_worker_process(
    tmp_path: Path, postgres_databases: PostgresDatabases, backend: str
) -> None:
    """The worker learns of the cancel from the database: NOTIFY on PostgreSQL, its next
    check of the job on SQLite.

    The job is streamed so that the cancel is sent once the worker's model is producing text:
    `in_progress` alone is written just before generation starts, and a cancel that lands in
    between stops the job before the model has anything to stop (no "generation cancelled")."""
    env = dict(NO_DATABASE_URL)
    if backend == "postgres":
        env["DATABASE_URL"] = postgres_databases.create()
    home = tmp_path / "home"
    server = start_server(home, env=env, args=["--no-worker"])
    worker = start_worker(home, tmp_path / "worker.log", env=env)
    try:
        with raw_client(server) as http:
            request = {**long_job(), "background": True, "stream": True}
            with http.stream("POST", URL, json=request) as streaming:
                assert streaming.status_code == 200, streaming.read().decode()
                created, delta = first_text_delta(streaming.iter_lines())
                assert delta, "the stream ended before the model produced any text"
                response = cancel(http, created["id"])
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled", response.json()
            wait_for_log_line(
                worker,
                lambda line: line.get("message") == "generation cancelled",
                timeout=5,
                what="the worker process's 'generation cancelled'",
            )
            (finish,) = wait_until(
                lambda: log_entries(worker, FINISHED, created["id"]),
                timeout=5,
                what="the worker's 'background job finished' line",
            )
            assert finish["status"] == "cancelled", finish
            assert retrieve(http, created["id"])["status"] == "cancelled"
    finally:
        stop_worker(worker)
        stop_server(server)


def test_a_worker_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    worker = start_worker(home, tmp_path / "worker.log", env=NO_DATABASE_URL)
    assert stop_worker(worker, signal.SIGINT) == 0, worker.log_path.read_text()


def test_two_workers_on_postgres_run_each_job_exactly_once(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    env: dict[str, str | None] = {**NO_DATABASE_URL, "DATABASE_URL": postgres_databases.create()}
    home = tmp_path / "home"
    server = start_server(home, env=env, args=["--no-worker"])
    workers: list[RunningWorker] = []
    try:
        for name in ("a", "b"):
            workers.append(start_worker(home, tmp_path / f"worker-{name}.log", env=env))
        with raw_client(server) as http:
            ids = [create_background(http, SHORT)["id"] for _ in range(10)]
            for response_id in ids:
                done = wait_terminal(http, response_id, timeout=120)
                assert done["status"] == "completed", done
    finally:
        for worker in workers:
            stop_worker(worker)
        stop_server(server)

    starts = {
        label: [line for line in worker.log_lines() if line.get("message") == STARTED]
        for label, worker in zip("ab", workers, strict=True)
    }
    for response_id in ids:
        runs = [
            line
            for lines in starts.values()
            for line in lines
            if line["response_id"] == response_id
        ]
        assert len(runs) == 1, (response_id, runs)
        assert runs[0]["attempt"] == 1, runs
        assert not started_lines(server, response_id)
    # Each worker names itself, differently, and both took work from the shared queue.
    names = {label: {line["worker"] for line in lines} for label, lines in starts.items()}
    assert all(len(found) == 1 for found in names.values()), names
    assert names["a"] != names["b"], names
    assert starts["a"] and starts["b"], {k: len(v) for k, v in starts.items()}


# --- crashes, restarts and hand-back ------------------------------------------------------------


def test_a_job_killed_with_its_server_is_run_again_by_the_restarted_server(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env: dict[str, str | None] = {**NO_DATABASE_URL, "AISERVICE_JOB_LEASE_S": "2"}
    first = start_server(home, env=env, log_path=tmp_path / "first.log")
    try:
        with raw_client(first) as http:
            created = create_background(http, long_job(RESTARTED_TOKENS))
            wait_for_status(http, created["id"], {"in_progress"})
        wait_for_start(first, created["id"], 1, timeout=10)
    finally:
        kill(first)

    second = start_server(home, env=env, log_path=tmp_path / "second.log")
    try:
        start = wait_for_start(second, created["id"], 2, timeout=30)
        assert start["worker"] != started_lines(first, created["id"])[0]["worker"], start
        with raw_client(second) as http:
            done = wait_terminal(http, created["id"], timeout=240)
        assert_finished_well(done)
    finally:
        stop_server(second)


def test_a_queued_job_survives_a_killed_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_server(
        home, env=NO_DATABASE_URL, args=["--no-worker"], log_path=tmp_path / "a.log"
    )
    try:
        with raw_client(first) as http:
            created = create_background(http, SHORT)
    finally:
        kill(first)

    second = start_server(home, env=NO_DATABASE_URL, log_path=tmp_path / "b.log")
    try:
        with raw_client(second) as http:
            done = wait_terminal(http, created["id"])
        assert done["status"] == "completed", done
        (start,) = started_lines(second, created["id"])
        assert start["attempt"] == 1, start
    finally:
        stop_server(second)


def test_a_job_interrupted_more_often_than_allowed_fails_with_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env: dict[str, str | None] = {
        **NO_DATABASE_URL,
        "AISERVICE_JOB_LEASE_S": "2",
        "AISERVICE_JOB_MAX_ATTEMPTS": "1",
    }
    first = start_server(home, env=env, log_path=tmp_path / "first.log")
    try:
        with raw_client(first) as http:
            created = create_background(http, long_job())
            wait_for_status(http, created["id"], {"in_progress"})
        wait_for_start(first, created["id"], 1, timeout=10)
    finally:
        kill(first)

    second = start_server(home, env=env, log_path=tmp_path / "second.log")
    try:
        with raw_client(second) as http:
            done = wait_terminal(http, created["id"], timeout=60)
        assert done["status"] == "failed", done
        assert_matches_schema(done, "Response")
        assert done["error"] and "interrupt" in done["error"]["message"].lower(), done
        assert done["output"] == [], done  # it was not run again
        assert started_lines(second, created["id"]) == []  # abandoned, not started again
        finish = wait_for_log_line(
            second,
            lambda line: (
                line.get("message") == FINISHED and line.get("response_id") == created["id"]
            ),
            timeout=10,
            what="the failed job's 'background job finished' line",
        )
        assert finish["status"] == "failed", finish
    finally:
        stop_server(second)


def test_a_job_the_model_cannot_run_is_refused_up_front(bg_http: httpx.Client) -> None:
    """An input far beyond the model's context window is refused when it is enqueued, with
    the status code a foreground request gets, rather than queued to fail later."""
    params = {**SHORT, "input": "lighthouse " * 12000}
    response = bg_http.post(URL, json={**params, "background": True})
    assert_error_envelope(response, 400, param="input")


def test_a_gracefully_stopped_server_hands_its_running_job_back(tmp_path: Path) -> None:
    """SIGTERM: the running job is queued again at once, so the next server starts it well
    before the 30 s lease would have expired."""
    home = tmp_path / "home"
    env: dict[str, str | None] = {**NO_DATABASE_URL, "AISERVICE_JOB_LEASE_S": "30"}
    first = start_server(home, env=env, log_path=tmp_path / "first.log")
    try:
        with raw_client(first) as http:
            created = create_background(http, long_job(RESTARTED_TOKENS))
            wait_for_status(http, created["id"], {"in_progress"})
        wait_for_start(first, created["id"], 1, timeout=10)
    finally:
        stop_server(first)
    # (No exit status to check: uvicorn re-raises the SIGTERM after its graceful shutdown.)

    stopped_at = time.monotonic()
    second = start_server(home, env=env, log_path=tmp_path / "second.log")
    try:
        wait_for_start(second, created["id"], 2, timeout=20 - (time.monotonic() - stopped_at))
        with raw_client(second) as http:
            done = wait_terminal(http, created["id"], timeout=240)
        assert_finished_well(done)
    finally:
        stop_server(second)


def test_a_gracefully_stopped_worker_hands_its_running_job_to_another(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env: dict[str, str | None] = {**NO_DATABASE_URL, "AISERVICE_JOB_LEASE_S": "30"}
    server = start_server(home, env=env, args=["--no-worker"])
    first = start_worker(home, tmp_path / "first.log", env=env)
    second: RunningWorker | None = None
    try:
        with raw_client(server) as http:
            created = create_background(http, long_job(RESTARTED_TOKENS))
            wait_for_status(http, created["id"], {"in_progress"})
            wait_for_start(first, created["id"], 1, timeout=10)
            assert stop_worker(first) == 0, first.log_path.read_text()[-3000:]
            assert retrieve(http, created["id"])["status"] == "queued"
            second = start_worker(home, tmp_path / "second.log", env=env)
            wait_for_start(second, created["id"], 2, timeout=20)
            assert_finished_well(wait_terminal(http, created["id"], timeout=240))
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
        stop_server(server)
