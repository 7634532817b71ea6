"""Batch API on the workers: lines per second, and the same key's interactive latency meanwhile.

Everything runs against the project's fake upstream (`python -m aiservice.testing.fake_upstream
--no-record`, its own process), which answers every chat completion after a first-byte delay
(`--delay-ms`, default 50: a `Fault(first_byte_delay_s=..., times=None)`), as one upstream model
`fake-mini` (`provider = "openai"`, `max_retries = 0`). Each setup gets a temporary
AISERVICE_HOME and a fresh database: SQLite in that home, or with `--postgres ADMIN_DSN` a
database created for it on that server (asyncpg) and dropped afterwards. Workers poll every
0.1 s (AISERVICE_WORKER_POLL_S) and run `--concurrency` lines at once (default 4).

Part 1, lines per second. `aiservice serve --no-worker` plus 1, then (on a new database) 2
`aiservice worker` processes. One batch of `--lines` chat completions (default 2,000), created
with the master key (no rate limit): the time from `POST /v1/batches` to the first `retrieve`
(polled every 0.2 s) that says `completed`; lines/s = lines / that. The output file must hold
every line, each answered 200. No target: the 1-worker and 2-worker figures and their ratio.

Part 2, interactive latency of the same key during a batch. `aiservice serve` with its
in-process worker: without Redis each process counts rate limits on its own, so only there do
the batch's lines and the interactive requests meet in one limiter and one priority queue. A
user's API key gets its own `rpm` limit (below), and `[rate_limits] max_wait_s = 2`, so a
refused request waits in the queue (interactive requests, priority medium, ahead of the batch's
lines, priority low) rather than getting a 429 at once. `--interactive` sequential chat
completions of that key (default 200, after 5 unmeasured), client-side latency, measured:
  (a) no batch       before any batch;
  (b) batch running  a batch of that key in progress with lines done, its limit not yet
                     reached (no target: what a running batch costs the server's event loop
                     and the 2 cores, not the limiter's doing);
  (c) held back      once the limiter has refused or queued the batch's lines (the key's
                     `GET /v1/admin/ratelimits` stats say so): target p50 at most 20 % above (a).
Then the batch is cancelled (it must not have a failed line) to keep the run short.

The limit. rpm = 10 x `--interactive` (2,000 for 200; `--rpm` to choose), and the batch has
max(`--lines`, rpm) lines, so that:
- the batch alone saturates it: a worker runs lines many times faster than 2,000 a minute
  (part 1), so within some 20 s the batch reaches its share of the limit and is then held back
  by the limiter (its lines queued, refused, handed back and retried), not merely slowed by a
  busy server;
- a batch line counts against only `rate_limits.batch_share` (80 %) of the limit; the 20 % left
  (400 requests a minute here) holds the 200 requests of (c), plus up to 200 of (b) made after
  the batch reached its share, all within one minute. So with the batch at its share, an
  interactive request should find room and go through at once; should it have to wait, the
  queue puts it ahead of every batch line: it waits behind nothing. A smaller rpm would make
  (c) measure the interactive requests' own limit; a larger one, a batch that takes longer to
  meet it, or never does.
An rpm window slides in one-second steps, so a batch at its share stays held until its first
charges leave the window (61 s after they were made): during (c) it runs almost nothing.
`--batch-share 1` gives the batch the whole limit, leaving the priority queue alone to protect
the interactive requests (which it cannot: it orders waiters, it does not keep capacity back).
REDIS_URL is not passed on: every count is in the server's memory.

Exit status 1 if the latency target is missed, an interactive request failed, or a check of
part 1 failed. Every process started here is stopped on exit (Ctrl-C and SIGTERM included).

    .venv/bin/python benchmarks/batch_throughput.py --lines 200 --interactive 50
    .venv/bin/python benchmarks/batch_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import httpx
from rich.console import Console
from rich.table import Table

MASTER_KEY = "sk-bench-master-key"
MODEL = "fake-mini"
LATENCY_SLACK = 0.20  # target: (c) p50 at most 20 % above (a)
WORKER_POLL_S = 0.1
BATCH_POLL_S = 0.2
MAX_WAIT_S = 2.0  # [rate_limits] max_wait_s
WARMUP = 5
TERMINAL = {"completed", "failed", "expired", "cancelled"}
SERVER_COMMAND = [sys.executable, "-m", "aiservice"]
console = Console(width=None if sys.stdout.isatty() else 180)


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process, its output in a log file; every one is stopped by `stop_all`."""

    started: ClassVar[list[Process]] = []

    def __init__(self, log_path: Path, command: list[str], env: dict[str, str] | None = None):
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        Process.started.append(self)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.log_path.name}: exited early:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @classmethod
    def stop_all(cls) -> None:
        while cls.started:
            cls.started.pop().stop()


def wait_for(what: str, ready: Callable[[], bool], process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready in {timeout:g} s:\n{process.log_text()[-4000:]}")


def start_upstream(root: Path, delay_ms: float) -> tuple[Process, str]:
    """The fake upstream in its own process; every chat completion delayed by `delay_ms`."""
    port = free_port()
    command = [sys.executable, "-m", "aiservice.testing.fake_upstream", "--port", str(port)]
    upstream = Process(root / "upstream.log", [*command, "--no-record"])
    url = f"http://127.0.0.1:{port}"
    wait_for("fake upstream", lambda: httpx.get(f"{url}/v1/models").is_success, upstream, 30)
    if delay_ms > 0:
        fault = {"path": "/v1/chat/completions", "first_byte_delay_s": delay_ms / 1000}
        httpx.post(f"{url}/_fake/faults", json=fault | {"times": None}).raise_for_status()
    return upstream, f"{url}/v1"


def server_env(home: Path, args: argparse.Namespace, database_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_")
        and k.upper() not in ("DATABASE_URL", "OPENAI_API_KEY", "REDIS_URL")
    }
    env |= {
        "AISERVICE_HOME": str(home),
        "AISERVICE_MASTER_KEY": MASTER_KEY,
        "AISERVICE_WORKER_POLL_S": str(WORKER_POLL_S),
        "AISERVICE_WORKER_CONCURRENCY": str(args.concurrency),
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def write_config(home: Path, upstream_url: str, batch_share: float | None) -> None:
    share = "" if batch_share is None else f"batch_share = {batch_share:g}\n"
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\nbase_url = "{upstream_url}"\n'
        "max_retries = 0\n\n"
        "[aliases]\n\n"  # no aliases to the local model, which is not configured
        f"[rate_limits]\nmax_wait_s = {MAX_WAIT_S:g}\n{share}",
        encoding="utf-8",
    )


@contextlib.contextmanager
def postgres_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database (dropped at the end); yields its SQLAlchemy URL."""
    import asyncio

    import asyncpg

    name = f"aiservice_bench_{os.urandom(4).hex()}"

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def deployment(
    args: argparse.Namespace, upstream_url: str, name: str, workers: int
) -> Iterator[str]:
    """A server (`--no-worker` when `workers` > 0, else with its in-process worker) and that
    many `aiservice worker` processes on a fresh home and database; yields the base URL."""
    home = Path(tempfile.mkdtemp(prefix=f"aiservice-bench-batch-{name}-"))
    try:
        with contextlib.ExitStack() as stack:
            database_url = None
            if args.postgres:
                database_url = stack.enter_context(postgres_database(args.postgres))
            env = server_env(home, args, database_url)
            write_config(home, upstream_url, args.batch_share)
            port = free_port()
            extra = ["--no-worker"] if workers else []
            command = [*SERVER_COMMAND, "serve", "--port", str(port), *extra]
            server = Process(home / "server.log", command, env)
            stack.callback(server.stop)
            base_url = f"http://127.0.0.1:{port}"
            ready = lambda: httpx.get(f"{base_url}/ready", timeout=1).status_code == 200  # noqa: E731
            wait_for("server", ready, server, 180)
            for index in range(workers):
                worker = Process(home / f"worker-{index + 1}.log", [*SERVER_COMMAND, "worker"], env)
                stack.callback(worker.stop)
                wait_for("worker", lambda w=worker: "worker started" in w.log_text(), worker, 180)
            yield base_url
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
        else:
            console.print(f"kept {home}", highlight=False)


# --- batches ----------------------------------------------------------------------------------


def batch_input(lines: int, tag: str) -> bytes:
    rows = (
        json.dumps(
            {
                "custom_id": f"{tag}-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": f"Classify mail number {index}"}],
                    "max_tokens": 16,
                },
            }
        )
        for index in range(lines)
    )
    return ("\n".join(rows) + "\n").encode()


def submit_batch(http: httpx.Client, lines: int, tag: str) -> tuple[str, float]:
    """Upload the input file and create the batch; returns its id and when create was sent."""
    upload = http.post(
        "/v1/files",
        files={"file": (f"{tag}.jsonl", batch_input(lines, tag), "application/jsonl")},
        data={"purpose": "batch"},
    )
    upload.raise_for_status()
    started = time.perf_counter()
    created = http.post(
        "/v1/batches",
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    created.raise_for_status()
    return created.json()["id"], started


def wait_batch(
    http: httpx.Client, batch_id: str, timeout: float, until: Callable[[dict], bool]
) -> dict:
    """Retrieve the batch every 0.2 s until `until` says so or it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        batch = http.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        if until(batch) or batch["status"] in TERMINAL:
            return batch
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch {batch_id} not there in {timeout:g} s: {batch}")
        time.sleep(BATCH_POLL_S)


def answered_lines(http: httpx.Client, batch: dict) -> int:
    """Lines of the output file answered 200, each custom_id once."""
    if not batch.get("output_file_id"):
        return 0
    content = http.get(f"/v1/files/{batch['output_file_id']}/content").raise_for_status()
    ids = set()
    for raw in content.text.splitlines():
        line = json.loads(raw)
        if (line.get("response") or {}).get("status_code") == 200:
            ids.add(line["custom_id"])
    return len(ids)


# --- part 1: lines per second -----------------------------------------------------------------


@dataclass
class Throughput:
    workers: int
    lines: int
    seconds: float
    status: str
    answered: int  # output lines answered 200

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.answered == self.lines


def measure_throughput(args: argparse.Namespace, upstream_url: str, workers: int) -> Throughput:
    with deployment(args, upstream_url, f"{workers}w", workers) as base_url:
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
            batch_id, started = submit_batch(http, args.lines, f"w{workers}")
            batch = wait_batch(http, batch_id, args.timeout, lambda b: b["status"] in TERMINAL)
            seconds = time.perf_counter() - started
            answered = answered_lines(http, batch)
    row = Throughput(workers, args.lines, seconds, batch["status"], answered)
    console.print(
        f"{workers} worker(s): {batch['status']} in {seconds:.2f} s, {row.lines_per_s:.1f} lines/s,"
        f" {answered}/{args.lines} lines answered in the output file",
        highlight=False,
    )
    return row


# --- part 2: interactive latency --------------------------------------------------------------


@dataclass
class Phase:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    batch_lines_done: int | None = None  # batch lines completed during the phase
    limiter: dict[str, int] = field(default_factory=dict)  # the key's stats, during the phase
    min_remaining: int | None = None  # x-ratelimit-remaining-requests, lowest seen

    def p(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")


INTERACTIVE_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Is this e-mail urgent? The server is down."}],
    "max_tokens": 16,
}


def interactive(user: httpx.Client, count: int, phase: Phase, budget_s: float = 120) -> None:
    """`count` sequential chat completions of the key (fewer if `budget_s` runs out)."""
    started = time.perf_counter()
    for _ in range(count):
        sent = time.perf_counter()
        response = user.post("/v1/chat/completions", json=INTERACTIVE_BODY)
        phase.latencies_ms.append((time.perf_counter() - sent) * 1000)
        status = str(response.status_code)
        phase.statuses[status] = phase.statuses.get(status, 0) + 1
        remaining = response.headers.get("x-ratelimit-remaining-requests")
        if remaining is not None:
            value = int(remaining)
            low = phase.min_remaining
            phase.min_remaining = value if low is None else min(low, value)
        if time.perf_counter() - started > budget_s:
            break
    phase.seconds = time.perf_counter() - started


def key_stats(master: httpx.Client, key_id: str) -> dict[str, int]:
    data = master.get("/v1/admin/ratelimits").raise_for_status().json()["data"]
    for stats in data:
        if stats["subject"] == f"key:{key_id}":
            return {k: stats[k] for k in ("requests_last_minute", "queued", "rejected")} | {
                "waiting_now": stats["waiting_now"]
            }
    return {"requests_last_minute": 0, "queued": 0, "rejected": 0, "waiting_now": 0}


def run_phase(
    label: str, count: int, user: httpx.Client, master: httpx.Client, key_id: str, batch_id=None
) -> Phase:
    phase = Phase(label)
    before = key_stats(master, key_id)
    done_before = completed(user, batch_id) if batch_id else None
    interactive(user, count, phase)
    after = key_stats(master, key_id)
    if batch_id:
        phase.batch_lines_done = completed(user, batch_id) - (done_before or 0)
    phase.limiter = {
        "queued": after["queued"] - before["queued"],
        "rejected": after["rejected"] - before["rejected"],
        "requests_last_minute": after["requests_last_minute"],
    }
    console.print(
        f"{label}: p50 {statistics.median(phase.latencies_ms):.1f} ms, p90 {phase.p(0.9):.1f} ms, "
        f"statuses {phase.statuses}, batch lines done {phase.batch_lines_done}, "
        f"limiter {phase.limiter}",
        highlight=False,
    )
    return phase


def completed(user: httpx.Client, batch_id: str) -> int:
    batch = user.get(f"/v1/batches/{batch_id}").raise_for_status().json()
    return batch.get("request_counts", {}).get("completed", 0)


def new_key(master: httpx.Client, rpm: int) -> tuple[str, str]:
    """A user, an API key of theirs with its own rpm limit: (key id, key)."""
    email = f"bench-{os.getpid()}-{os.urandom(3).hex()}@example.com"
    user = master.post("/v1/admin/users", json={"email": email, "password": "bench-password-1"})
    user.raise_for_status()
    key = master.post("/v1/admin/keys", json={"email": email}).raise_for_status().json()
    master.put(f"/v1/admin/keys/{key['id']}/rate_limits", json={"rpm": rpm}).raise_for_status()
    return key["id"], key["key"]


@dataclass
class Latency:
    rpm: int
    batch_lines: int
    phases: list[Phase]
    held_after_s: float  # batch created -> the limiter first held it back
    held_at_lines: int  # lines completed by then
    batch_failed: int  # failed lines of the batch at the end (must be 0)
    batch_status: str


def wait_held_back(master, user, key_id: str, batch_id: str, timeout: float) -> int:
    """Until the limiter has refused or queued batch lines of the key; the lines done then."""
    base = key_stats(master, key_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = key_stats(master, key_id)
        if stats["waiting_now"] or stats["queued"] > base["queued"] or stats["rejected"]:
            return completed(user, batch_id)
        time.sleep(BATCH_POLL_S)
    raise RuntimeError(f"the limiter did not hold the batch back in {timeout:g} s")


def measure_latency(args: argparse.Namespace, upstream_url: str) -> Latency:
    rpm = args.rpm or 10 * args.interactive
    lines = max(args.lines, rpm)
    with (
        deployment(args, upstream_url, "latency", 0) as base_url,
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60
        ) as master,
    ):
        key_id, key = new_key(master, rpm)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=auth, timeout=120) as user:
            interactive(user, WARMUP, Phase("warm-up"))
            phases = [run_phase("(a) no batch", args.interactive, user, master, key_id)]
            batch_id, created = submit_batch(user, lines, "lat")
            wait_batch(
                user, batch_id, 120, lambda b: b.get("request_counts", {}).get("completed", 0) >= 20
            )
            phases.append(
                run_phase("(b) batch running", args.interactive, user, master, key_id, batch_id)
            )
            held_at = wait_held_back(master, user, key_id, batch_id, args.timeout)
            held_after = time.perf_counter() - created
            phases.append(
                run_phase("(c) batch held back", args.interactive, user, master, key_id, batch_id)
            )
            batch = user.get(f"/v1/batches/{batch_id}").raise_for_status().json()
            user.post(f"/v1/batches/{batch_id}/cancel").raise_for_status()
            ended = wait_batch(user, batch_id, 60, lambda b: b["status"] in TERMINAL)
    failed = batch.get("request_counts", {}).get("failed", 0)
    return Latency(rpm, lines, phases, held_after, held_at, failed, ended["status"])


# --- report -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"


def throughput_rows(table: Table, rows: list[Throughput]) -> bool:
    for row in rows:
        check = f"{row.status}, {row.answered:,} answered in the output file"
        table.add_row(
            "lines/s",
            f"{row.workers} worker process{'es' if row.workers > 1 else ''}",
            f"{row.lines:,} lines",
            f"{row.seconds:.2f}",
            f"{row.lines_per_s:.1f}",
            "",
            "",
            check,
            "all lines answered",
            verdict(row.ok),
        )
    if len(rows) == 2:
        ratio = rows[1].lines_per_s / rows[0].lines_per_s
        table.add_row("", "2 workers / 1 worker", "", "", f"x{ratio:.2f}", "", "", "", "", "")
    return all(row.ok for row in rows)


def latency_rows(table: Table, result: Latency) -> bool:
    base = statistics.median(result.phases[0].latencies_ms)
    ok = True
    for index, phase in enumerate(result.phases):
        p50 = statistics.median(phase.latencies_ms)
        notes = [", ".join(f"{n} x {s}" for s, n in sorted(phase.statuses.items()))]
        if phase.batch_lines_done is not None:
            rate = phase.batch_lines_done / phase.seconds
            notes.append(f"batch +{phase.batch_lines_done:,} lines ({rate:.0f}/s)")
        limiter = phase.limiter
        notes.append(f"queued +{limiter['queued']}, rejected +{limiter['rejected']}")
        if phase.min_remaining is not None:
            notes.append(f"min remaining {phase.min_remaining}")
        target, result_cell = "", ""
        if index > 0:
            target = f"{p50 / base - 1:+.0%} vs (a)"
        if index == 2:
            passed = p50 <= base * (1 + LATENCY_SLACK) and phase.errors == 0
            target += f" (≤ +{LATENCY_SLACK:.0%})"
            result_cell = verdict(passed)
            ok &= passed
        ok &= phase.errors == 0
        table.add_row(
            "latency" if index == 0 else "",
            phase.label,
            f"{len(phase.latencies_ms)} requests",
            f"{phase.seconds:.2f}",
            "",
            f"{p50:.1f}",
            f"{phase.p(0.9):.1f}",
            "; ".join(notes),
            target,
            result_cell,
        )
    return ok


def report(
    args: argparse.Namespace, rows: list[Throughput], latency: Latency, load: tuple[float, float]
) -> bool:
    database = "PostgreSQL" if args.postgres else "SQLite"
    share = "batch_share" if args.batch_share is None else f"batch_share={args.batch_share:g}"
    table = Table(
        title=(
            f"batch lines on the workers, fake upstream (first byte +{args.delay_ms:g} ms), "
            f"{database}, AISERVICE_WORKER_CONCURRENCY={args.concurrency}"
        )
    )
    table.add_column("part")
    table.add_column("row")
    table.add_column("size", justify="right")
    for column in ("seconds", "lines/s", "p50 ms", "p90 ms"):
        table.add_column(column, justify="right")
    table.add_column("notes")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")
    ok = throughput_rows(table, rows)
    table.add_section()
    ok &= latency_rows(table, latency)
    console.print(table)
    console.print(
        f"lines/s: `serve --no-worker` + `aiservice worker` processes, master key, time from "
        f"batches.create to `completed` (retrieve every {BATCH_POLL_S:g} s). latency: `serve` "
        f"with its in-process worker, one key with rpm={latency.rpm} (batch lines count "
        f"against {share} of it), max_wait_s={MAX_WAIT_S:g}; a batch of {latency.batch_lines:,} "
        f"lines of that key; held back {latency.held_after_s:.1f} s after its creation, at "
        f"{latency.held_at_lines:,} lines done; failed lines {latency.batch_failed}, then "
        f"{latency.batch_status}. notes: statuses, batch lines completed during the row, the "
        f"key's limiter stats during it (queued and rejected, batch lines included), the "
        f"lowest x-ratelimit-remaining-requests an interactive answer carried.",
        highlight=False,
    )
    console.print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"1-min load average {load[0]:.2f} before, {load[1]:.2f} after; "
        f"AISERVICE_WORKER_POLL_S={WORKER_POLL_S:g}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )
    return ok and latency.batch_failed == 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2000, help="lines of the measured batch")
    parser.add_argument(
        "--interactive", type=int, default=200, help="sequential interactive requests per row"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="AISERVICE_WORKER_CONCURRENCY (default 4)"
    )
    parser.add_argument(
        "--delay-ms", type=float, default=50, help="the fake upstream's first-byte delay"
    )
    parser.add_argument("--rpm", type=int, help="the key's rpm (default 10 x --interactive)")
    parser.add_argument(
        "--postgres", default="", help="admin DSN of a PostgreSQL server (default: SQLite)"
    )
    parser.add_argument(
        "--batch-share",
        type=float,
        help="[rate_limits] batch_share for every server (default: the service's, 0.8)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds a batch may take")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary homes")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # Ctrl-C (even when started in the background, where SIGINT is ignored) and SIGTERM both
    # raise KeyboardInterrupt, so that every process started is stopped.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="aiservice-bench-batch-"))
    try:
        _, upstream_url = start_upstream(root, args.delay_ms)
        rows = [measure_throughput(args, upstream_url, workers) for workers in (1, 2)]
        latency = measure_latency(args, upstream_url)
    except KeyboardInterrupt:
        console.print("interrupted: stopping every process started")
        return 130
    finally:
        Process.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    ok = report(args, rows, latency, (load_start, os.getloadavg()[0]))
    if args.json:
        figures = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "throughput": [asdict(row) | {"lines_per_s": row.lines_per_s} for row in rows],
            "latency": asdict(latency),
        }
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
