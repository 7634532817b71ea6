"""`aiservice analyze` against a real server (--server) whose two models are on the fake
upstream, which answers each stage of an analysis with valid JSON of its schema: the JSON and
the Markdown outputs at the ledger's cost, --compare, the refused documents, --cancel, and in a
pseudo-terminal the progress bar, Ctrl-C detaching and --resume finishing the analysis."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiservice.testing import FakeUpstream, Fault
from analysis_support import REPORT_TITLE, long_text, stage_reply
from support import (
    MASTER_KEY,
    RunningServer,
    bearer,
    run_cli,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import table_rows

MODEL, DEAR_MODEL = "analyst", "analyst-pro"  # the second costs ten times as much
PATH = "/api/ai/documents/analyses"
SUMMARY_KEYS = {"id", "model", "status", "report", "usage", "cost"}
TITLE = REPORT_TITLE
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>78]")
SLOW = Fault(path="/v1/chat/completions", first_byte_delay_s=1.0, times=None)


def model_entry(name: str, upstream: FakeUpstream, price_in: float, price_out: float) -> str:
    return (
        f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{upstream.base_url}"\n'
        f'upstream_model = "gpt-4o-mini"\nprice_input_per_1m = {price_in}\n'
        f"price_output_per_1m = {price_out}\ncontext_window = 2048\nmax_retries = 0\n"
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(reply=stage_reply) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("aiservice-analyze-cli")
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        + model_entry(MODEL, fake, 1.0, 4.0)
        + "\n"
        + model_entry(DEAR_MODEL, fake, 10.0, 40.0),
        encoding="utf-8",
    )
    env: dict[str, str | None] = {
        "DATABASE_URL": None,
        "AISERVICE_DATABASE_URL": None,
        "AISERVICE_WORKER_POLL_S": "0.1",
        "AISERVICE_JOB_LEASE_S": "2",
    }
    running = start_server(home, env=env)
    yield running
    stop_server(running)


@pytest.fixture
def slow(fake: FakeUpstream) -> Iterator[None]:
    """Every stage's request waits a second upstream: the analysis runs for a few seconds."""
    fake.add_fault(SLOW)
    yield
    fake.clear_faults()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("documents") / "long.txt"
    path.write_text(long_text(20), encoding="utf-8")  # five pieces at a 2048-token context
    return path


def analyze(server: RunningServer, home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(
        "analyze", *args, "--server", server.base_url, "--api-key", MASTER_KEY, home=home
    )


def api(server: RunningServer, method: str, path: str = PATH, **kwargs: Any) -> dict[str, Any]:
    response = httpx.request(
        method, f"{server.base_url}{path}", headers=bearer(MASTER_KEY), timeout=60, **kwargs
    )
    assert response.status_code == 200, response.text
    return response.json()


def ledger_cost(server: RunningServer, analysis_id: str) -> float:
    rows = [r for r in table_rows(server) if r["metadata"].get("analysis_id") == analysis_id]
    assert rows, f"no usage record of {analysis_id}"
    return sum(row["cost_usd"] for row in rows)


def usage_api_cost(server: RunningServer, analysis_id: str) -> float:
    data = api(server, "GET", "/v1/usage", params={"group_by": "metadata.analysis_id"})["data"]
    [row] = [row for row in data if row.get("metadata.analysis_id") == analysis_id]
    return row["cost_usd"]


def printed_cost(text: str) -> float:
    found = re.search(r"Total cost: \$([0-9.]+) USD", text)
    assert found, text
    return float(found.group(1))


def test_json_gives_one_object_at_the_ledgers_cost(
    server: RunningServer, document: Path, tmp_path: Path
) -> None:
    done = analyze(server, tmp_path, str(document), "--model", MODEL, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # one object, nothing else on stdout
    assert set(result) == SUMMARY_KEYS and result["status"] == "completed"
    assert result["id"].startswith("analysis_") and result["id"] in done.stderr
    assert result["report"]["title"] == TITLE
    stages = result["usage"]["stages"]
    assert stages["map"]["requests"] == 5 and stages["report"]["requests"] == 1
    assert result["cost"] > 0
    assert result["cost"] == pytest.approx(ledger_cost(server, result["id"]), abs=1e-9)
    assert result["cost"] == pytest.approx(usage_api_cost(server, result["id"]), abs=1e-9)


def test_text_output_and_markdown_file(
    server: RunningServer, document: Path, tmp_path: Path
) -> None:
    target = tmp_path / "report.md"
    done = analyze(server, tmp_path, str(document), "--model", MODEL, "--markdown", str(target))
    assert done.returncode == 0, done.stderr
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {TITLE}"
    assert "## Key points" in lines and "- Sales grew 12 %" in lines and "### Sales" in lines
    text = done.stdout
    for expected in (TITLE, "[by a lot]", "Key points", "Hire two engineers", "Sections"):
        assert expected in text, text  # the model's brackets are text, not markup
    assert re.search(r"map\s+│\s+5\s+│", text) and re.search(r"report\s+│\s+1\s+│", text), text
    analysis_id = re.search(r"analysis_[0-9a-f]+", done.stderr)
    assert analysis_id, done.stderr
    assert printed_cost(text) == pytest.approx(ledger_cost(server, analysis_id.group()), abs=1e-9)


def test_compare_runs_each_model_and_tables_them(
    server: RunningServer, document: Path, tmp_path: Path
) -> None:
    done = analyze(server, tmp_path, str(document), "--compare", f"{MODEL},{DEAR_MODEL}", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [result["model"] for result in results] == [MODEL, DEAR_MODEL]
    assert all(set(r) == SUMMARY_KEYS and r["status"] == "completed" for r in results)
    cheap, dear = results
    assert dear["cost"] == pytest.approx(10 * cheap["cost"])  # same tokens, ten times the price
    for result in results:
        assert result["cost"] == pytest.approx(ledger_cost(server, result["id"]), abs=1e-9)
    table = done.stderr  # with --json the table is on stderr, stdout is the JSON alone
    assert "cost ratio" in table and "wall time" in table
    assert re.search(rf"{MODEL}\s+│\s+completed\s+│\s+6\s+│.*1\.00x", table), table
    assert re.search(rf"{DEAR_MODEL}\s+│\s+completed\s+│\s+6\s+│.*10\.00x", table), table


def test_stdin_is_read_as_a_document(server: RunningServer, tmp_path: Path) -> None:
    done = run_cli(
        "analyze", "-", "--model", MODEL, "--json", "--server", server.base_url,
        "--api-key", MASTER_KEY, home=tmp_path, input="A short memo about sales.",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n\n", "empty.txt: the document is empty (no text in it)"),
        ("missing.txt", None, "missing.txt: no such file"),
        ("picture.png", "", "picture.png: unsupported document type .png"),
    ],
)
def test_an_unreadable_document_exits_2_naming_the_file(
    server: RunningServer, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    done = analyze(server, tmp_path, str(path), "--model", MODEL)
    assert done.returncode == 2
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_an_unknown_id_exits_2(server: RunningServer, tmp_path: Path) -> None:
    done = analyze(server, tmp_path, "--resume", "analysis_nope")
    assert done.returncode == 2
    assert done.stderr.strip() == "No such analysis: analysis_nope"


def test_cancel_stops_a_running_analysis(server: RunningServer, slow: None, tmp_path: Path) -> None:
    created = api(server, "POST", json={"text": long_text(20), "model": MODEL})
    wait_until(
        lambda: api(server, "GET", f"{PATH}/{created['id']}")["status"] == "in_progress",
        what="the analysis running",
    )
    done = analyze(server, tmp_path, "--cancel", created["id"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{created['id']}: cancelled"
    assert api(server, "GET", f"{PATH}/{created['id']}")["status"] == "cancelled"
    again = analyze(server, tmp_path, "--cancel", created["id"], "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "cancelled"


def test_without_a_server_it_runs_in_this_process(fake: FakeUpstream, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(model_entry(MODEL, fake, 1.0, 4.0), encoding="utf-8")
    source = home / "memo.md"
    source.write_text("# Memo\n\n" + long_text(8), encoding="utf-8")
    done = run_cli("analyze", str(source), "--model", MODEL, "--json", home=home)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["cost"] > 0
    again = run_cli("analyze", "--resume", result["id"], "--json", home=home)  # kept in its home
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == result


# --- in a pseudo-terminal ------------------------------------------------------------------


class Terminal:
    """`aiservice analyze …` with stdin, stdout and stderr on a pseudo-terminal, in a process
    group of its own; what it writes is read as it runs."""

    def __init__(self, server: RunningServer, home: Path, *args: str):
        controller, child = os.openpty()
        environment = {
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("AISERVICE_")},
            **{"AISERVICE_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "200"},
        }
        for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
            environment.pop(name, None)
        command = [sys.executable, "-m", "aiservice", "analyze", *args]
        command += ["--server", server.base_url, "--api-key", MASTER_KEY]
        self.process = subprocess.Popen(
            command, stdin=child, stdout=child, stderr=child, env=environment,
            start_new_session=True,
        )  # fmt: skip
        os.close(child)
        self._controller = controller
        self.raw = ""

    def read(self) -> str:
        """Whatever it wrote since, without waiting; everything so far, as plain text."""
        while select.select([self._controller], [], [], 0)[0]:
            try:
                data = os.read(self._controller, 65536)
            except OSError:  # EIO: the child's side is closed
                break
            if not data:
                break
            self.raw += data.decode("utf-8", "replace")
        return ANSI.sub("", self.raw)

    def wait(self, timeout: float = 60) -> int:
        wait_until(
            lambda: self.read() is not None and self.process.poll() is not None,
            timeout=timeout,
            what="the command to end",
        )
        self.read()
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._controller)


@pytest.fixture
def terminal(server: RunningServer, tmp_path: Path) -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for each in started:
        each.close()


def test_the_bar_advances_and_the_cost_printed_is_the_ledgers(
    server: RunningServer, document: Path, slow: None, terminal: list[Terminal], tmp_path: Path
) -> None:
    run = Terminal(server, tmp_path, str(document), "--model", MODEL)
    terminal.append(run)
    assert run.wait() == 0, run.read()
    text = run.read()
    states = set(re.findall(r"\b(\d+)/(\d+)\b", text))
    assert len(states) >= 2, text  # drawn more than once, with different done/total
    assert all(int(done) <= int(total) for done, total in states)
    assert re.search(r"\d+ chunks .*\d+ tokens .*\$\d+\.\d{6}", text), text
    analysis_id = re.search(r"analysis_[0-9a-f]+", text)
    assert analysis_id, text
    assert printed_cost(text) == pytest.approx(ledger_cost(server, analysis_id.group()), abs=1e-9)


def test_ctrl_c_detaches_and_resume_finishes(
    server: RunningServer,
    fake: FakeUpstream,
    document: Path,
    slow: None,
    terminal: list[Terminal],
    tmp_path: Path,
) -> None:
    run = Terminal(server, tmp_path, str(document), "--model", MODEL)
    terminal.append(run)
    found = wait_until(
        lambda: re.search(r"analysis_[0-9a-f]+", run.read()), what="the analysis's id"
    )
    analysis_id = found.group()
    wait_until(
        lambda: api(server, "GET", f"{PATH}/{analysis_id}")["status"] == "in_progress",
        what="the analysis running",
    )
    os.killpg(run.process.pid, signal.SIGINT)
    assert run.wait(timeout=30) == 130, run.read()
    expected = f"Detached; the analysis goes on: {analysis_id} (aiservice analyze --resume "
    assert f"{expected}{analysis_id})" in run.read()
    assert api(server, "GET", f"{PATH}/{analysis_id}")["status"] in {"queued", "in_progress"}
    fake.clear_faults()
    done = analyze(server, tmp_path, "--resume", analysis_id, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["id"] == analysis_id and result["status"] == "completed"
    assert result["cost"] == pytest.approx(ledger_cost(server, analysis_id), abs=1e-9)
