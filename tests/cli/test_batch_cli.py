"""`aiservice batch …` against a real server (--server) whose gpt-4o-mini is the bundled local
model: submit and follow a batch to its end, list, get, download, cancel, and the errors (an
unknown id, a finished batch, a malformed input file, a missing file, no server). A second
model, on a fake upstream that can be made to hang, keeps a batch running for Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from batch_support import chat_line, jsonl
from support import (
    MASTER_KEY,
    RunningServer,
    free_port,
    run_cli,
    start_server,
    stop_server,
    wait_until,
)

CUSTOM_IDS = ["first", "second", "third"]
SLOW_MODEL = "slow-upstream"


@dataclass(frozen=True)
class Submitted:
    batch_id: str
    done: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("aiservice-batch-cli")
    # Priced, so that the cost the CLI reads from /v1/usage is not 0.
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n'
        "price_input_per_1m = 1000.0\nprice_output_per_1m = 2000.0\n\n"
        f'[[models]]\nname = "{SLOW_MODEL}"\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\nupstream_model = "gpt-4o-mini"\nmax_retries = 0\n',
        encoding="utf-8",
    )
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(gateway: RunningServer) -> OpenAI:
    return OpenAI(base_url=gateway.api_url, api_key=MASTER_KEY, max_retries=0)


def batch_cli(gateway: RunningServer, home: Path, *args: str) -> subprocess.CompletedProcess:
    server = ("--server", gateway.base_url, "--api-key", MASTER_KEY)
    return run_cli("batch", *args, *server, home=home)


def write_lines(path: Path, lines: list) -> Path:
    path.write_bytes(jsonl(lines))
    return path


@pytest.fixture(scope="module")
def submitted(gateway: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Submitted:
    """A 3-line chat batch, submitted with --wait: it has ended when this returns."""
    home = tmp_path_factory.mktemp("cli-home")
    lines = [chat_line(custom_id, "gpt-4o-mini", max_tokens=5) for custom_id in CUSTOM_IDS]
    source = write_lines(home / "requests.jsonl", lines)
    done = batch_cli(
        gateway,
        home,
        *("submit", str(source), "--endpoint", "/v1/chat/completions"),
        *("--metadata", "project=cli-test", "--wait"),
    )
    return Submitted(done.stdout.splitlines()[0] if done.stdout else "", done)


def test_submit_wait_ends_completed_with_its_counts_and_cost(submitted: Submitted) -> None:
    done = submitted.done
    assert done.returncode == 0, done.stderr
    assert submitted.batch_id.startswith("batch_")
    assert re.search(r"status\s+completed", done.stdout)
    assert "3 completed, 0 failed, of 3" in done.stdout
    assert re.search(r"output file\s+file-", done.stdout)
    cost = re.search(r"cost \(USD\)\s+([0-9.]+)", done.stdout)
    assert cost is not None and float(cost.group(1)) > 0, done.stdout  # read from /v1/usage


def test_list_json_holds_the_batch(
    gateway: RunningServer, submitted: Submitted, tmp_path: Path
) -> None:
    done = batch_cli(gateway, tmp_path, "list", "--limit", "5", "--json")
    assert done.returncode == 0, done.stderr
    batches = {batch["id"]: batch for batch in json.loads(done.stdout)}
    assert batches[submitted.batch_id]["status"] == "completed"
    table = batch_cli(gateway, tmp_path, "list")
    assert table.returncode == 0 and submitted.batch_id in table.stdout


def test_get_json_is_the_batch_object(
    gateway: RunningServer, submitted: Submitted, tmp_path: Path
) -> None:
    done = batch_cli(gateway, tmp_path, "get", submitted.batch_id, "--json")
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch["id"] == submitted.batch_id and batch["object"] == "batch"
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert batch["metadata"] == {"project": "cli-test"}
    assert batch["usage"]["total_tokens"] > 0


def test_download_writes_the_output_file(
    gateway: RunningServer, submitted: Submitted, tmp_path: Path
) -> None:
    target = tmp_path / "results"  # made by the command
    done = batch_cli(gateway, tmp_path, "download", submitted.batch_id, "--out", str(target))
    assert done.returncode == 0, done.stderr
    output = target / f"{submitted.batch_id}_output.jsonl"
    assert done.stdout.split() == [str(output)]  # no error file: no line failed
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(CUSTOM_IDS)
    assert all(line["response"]["status_code"] == 200 for line in lines)


def test_cancelling_a_finished_batch_is_a_clear_error(
    gateway: RunningServer, submitted: Submitted, tmp_path: Path
) -> None:
    done = batch_cli(gateway, tmp_path, "cancel", submitted.batch_id)
    assert done.returncode == 2
    assert "can no longer be cancelled" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["get", "cancel", "download"])
def test_an_unknown_id_exits_2_with_a_message(
    gateway: RunningServer, tmp_path: Path, command: str
) -> None:
    done = batch_cli(gateway, tmp_path, command, "batch_doesnotexist")
    assert done.returncode == 2
    assert done.stderr.strip() == "No such batch: batch_doesnotexist"


def test_a_malformed_line_fails_the_batch_and_submit_exits_1(
    gateway: RunningServer, tmp_path: Path
) -> None:
    source = write_lines(
        tmp_path / "bad.jsonl", [chat_line("ok", "gpt-4o-mini", max_tokens=5), "{not json"]
    )
    done = batch_cli(
        gateway, tmp_path, "submit", str(source), "--endpoint", "/v1/chat/completions", "--wait"
    )
    assert done.returncode == 1, done.stderr
    assert re.search(r"status\s+failed", done.stdout)
    assert "line 2: This line is not valid JSON." in done.stdout
    batch_id = done.stdout.splitlines()[0]
    nothing = batch_cli(gateway, tmp_path, "download", batch_id)
    assert nothing.returncode == 2 and "has no output or error file" in nothing.stderr


def test_a_missing_file_exits_2_before_any_request(gateway: RunningServer, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    done = batch_cli(gateway, tmp_path, "submit", str(missing), "--endpoint", "/v1/embeddings")
    assert done.returncode == 2
    assert done.stderr.strip() == f"{missing}: cannot read it: No such file or directory"


def test_an_unreachable_server_exits_2(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = run_cli("batch", "list", "--server", nowhere, "--api-key", "sk-x", home=tmp_path)
    assert done.returncode == 2
    assert "could not reach the server" in done.stderr and "Traceback" not in done.stderr


def test_bad_metadata_is_refused_before_anything_is_sent(
    gateway: RunningServer, tmp_path: Path
) -> None:
    source = write_lines(tmp_path / "one.jsonl", [chat_line("a", "gpt-4o-mini", max_tokens=5)])
    args = ("submit", str(source), "--endpoint", "/v1/chat/completions", "--metadata", "novalue")
    done = batch_cli(gateway, tmp_path, *args)
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr


def test_ctrl_c_while_waiting_detaches_without_cancelling(
    gateway: RunningServer, client: OpenAI, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # Its one line waits on the upstream for a minute: the batch is running when Ctrl-C comes.
    upstream.add_fault(Fault(path="/v1/chat/completions", first_byte_delay_s=60, times=None))
    source = write_lines(tmp_path / "slow.jsonl", [chat_line("slow", SLOW_MODEL, max_tokens=5)])
    environment = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("AISERVICE_")},
        "AISERVICE_HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "aiservice", "batch", "submit", str(source)]
    command += ["--endpoint", "/v1/chat/completions", "--wait"]
    command += ["--server", gateway.base_url, "--api-key", MASTER_KEY]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    batch_id = ""
    try:
        assert process.stdout is not None
        batch_id = process.stdout.readline().strip()
        assert batch_id.startswith("batch_"), process.communicate(timeout=30)
        wait_until(
            lambda: upstream.request_count("/v1/chat/completions") > 0,
            what="the batch's line to reach the upstream",
        )
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert f"Detached; the batch goes on: {batch_id}" in stderr
        assert client.batches.retrieve(batch_id).status == "in_progress"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if batch_id:
            client.batches.cancel(batch_id)
        upstream.clear_faults()


def test_submit_wait_without_a_server_runs_the_batch_in_this_process(tmp_path: Path) -> None:
    lines = [chat_line(custom_id, "gpt-4o-mini", max_tokens=3) for custom_id in CUSTOM_IDS]
    source = write_lines(tmp_path / "requests.jsonl", lines)
    done = run_cli(
        "batch",
        "submit",
        str(source),
        "--endpoint",
        "/v1/chat/completions",
        "--wait",
        home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.splitlines()[0]
    listed = run_cli("batch", "get", batch_id, "--json", home=tmp_path / "home")
    assert listed.returncode == 0, listed.stderr
    batch = json.loads(listed.stdout)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
