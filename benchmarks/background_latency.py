"""Dispatch latency of background responses: enqueue -> a worker starts the job.

The script starts a real `aiservice serve` on a free port (temporary AISERVICE_HOME, its SQLite
database) and sends N background requests (`background: true`, max_output_tokens 16) one after
another, polling each to its end before sending the next: the queue is empty whenever a job
arrives, so what is measured is how long an idle worker takes to notice and start a new job,
not queueing behind other jobs.

The latency is the worker's own figure: the `waited_ms` field of its "background job started"
log line (enqueue -> start, both stamped by the service). Next to it, for the person reading,
the client's view: POST sent -> the job reported finished by GET (which includes generating 16
tokens and the polling interval of this script, 10 ms).

Rows:
  in-process worker   `serve` with its default in-process worker; target p50 < 50 ms
  worker process, PostgreSQL
                      `serve --no-worker` plus `aiservice worker` on a fresh PostgreSQL
                      database (--postgres): the queuing transaction NOTIFYs the worker;
                      target p50 < 50 ms
  worker process, SQLite
                      the same on one home (same SQLite file); the worker may only learn of
                      a job by polling the database,
                      so its target is p95 < AISERVICE_WORKER_POLL_S + 50 ms (skip with
                      --no-worker-process). Sequential requests arrive in step with its polls
                      (each is sent just after the worker saw the previous one end and looked
                      for more), so expect a p50 close to the whole poll interval, not half.

Exit status 1 if a target is missed.

    .venv/bin/python benchmarks/background_latency.py --requests 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

MASTER_KEY = "sk-bench-master-key"
MODEL = "gpt-4o-mini"
REQUEST = {
    "model": MODEL,
    "input": "What is 2+2?",
    "temperature": 0,
    "max_output_tokens": 16,
    "background": True,
}
TERMINAL = {"completed", "incomplete", "failed", "cancelled"}
P50_TARGET_MS = 50.0  # in-process worker: median enqueue -> start
POLL_SLACK_MS = 50.0  # worker process: p95 at most its poll interval plus this

SERVER_COMMAND = [sys.executable, "-m", "aiservice"]
console = Console(width=None if sys.stdout.isatty() else 140)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_log(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):  # a line that is not JSON (a banner)
            lines.append(json.loads(raw))
    return lines


class Process:
    """An `aiservice` subcommand on a throwaway home, its output in a JSON-lines log file."""

    def __init__(self, home: Path, name: str, args: list[str], env: dict[str, str]):
        self.log_path = home / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log_lines(self) -> list[dict]:
        return read_log(self.log_path)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.log_path.name}: exited early:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def base_env(home: Path, poll_s: float) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_") and k.upper() != "DATABASE_URL"
    }
    return {
        **env,
        "AISERVICE_HOME": str(home),
        "AISERVICE_MASTER_KEY": MASTER_KEY,
        "AISERVICE_WORKER_POLL_S": str(poll_s),
    }


def start_server(
    home: Path, env: dict[str, str], *extra: str, timeout: float = 180
) -> tuple[Process, str]:
    port = free_port()
    server = Process(home, "server", ["serve", "--port", str(port), *extra], env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                return server, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready in {timeout}s:\n{server.log_path.read_text()}")


def start_worker(home: Path, env: dict[str, str], timeout: float = 180) -> Process:
    worker = Process(home, "worker", ["worker"], env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        if any(line.get("message") == "worker started" for line in worker.log_lines()):
            return worker
        time.sleep(0.1)
    worker.stop()
    raise RuntimeError(f"worker not ready in {timeout}s:\n{worker.log_path.read_text()}")


@dataclass
class Row:
    label: str
    waited_ms: list[float]  # the worker's enqueue -> start, per request
    round_trip_ms: list[float]  # client: POST sent -> GET says finished
    statuses: dict[str, int]
    target: str
    ok: bool


def run_requests(base_url: str, count: int, warmup: int) -> tuple[list[str], list[float], dict]:
    """Send background requests one at a time, each polled to its end; returns the measured
    response ids, the client's round trips and the count of final statuses."""
    ids: list[str] = []
    round_trips: list[float] = []
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        for index in range(warmup + count):
            start = time.perf_counter()
            created = http.post("/v1/responses", json=REQUEST)
            created.raise_for_status()
            response_id = created.json()["id"]
            deadline = time.monotonic() + 120
            while True:
                body = http.get(f"/v1/responses/{response_id}").json()
                if body.get("status") in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{response_id} not finished in 120 s: {body}")
                time.sleep(0.01)
            elapsed = (time.perf_counter() - start) * 1000
            if index < warmup:
                continue
            ids.append(response_id)
            round_trips.append(elapsed)
            statuses[body["status"]] = statuses.get(body["status"], 0) + 1
            if (index - warmup + 1) % 10 == 0:
                console.print(f"  {index - warmup + 1}/{count} done", highlight=False)
    return ids, round_trips, statuses


def waited(ids: list[str], sources: list[Process]) -> list[float]:
    """Each job's waited_ms from the first "background job started" line about it."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while True:
        for source in sources:
            for line in source.log_lines():
                if line.get("message") == "background job started":
                    found.setdefault(line.get("response_id", ""), float(line["waited_ms"]))
        missing = [i for i in ids if i not in found]
        if not missing:
            return [found[i] for i in ids]
        if time.monotonic() > deadline:
            raise RuntimeError(f"no 'background job started' line for {missing[:3]} ...")
        time.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_in_process(args: argparse.Namespace, home: Path) -> Row:
    env = base_env(home, args.poll_s)
    server, base_url = start_server(home, env)
    try:
        console.print(f"in-process worker: server ready on {base_url} (home {home})")
        ids, round_trips, statuses = run_requests(base_url, args.requests, args.warmup)
        latencies = waited(ids, [server])
    finally:
        server.stop()
    ok = statistics.median(latencies) < P50_TARGET_MS
    return Row(
        "in-process worker",
        latencies,
        round_trips,
        statuses,
        f"p50 < {P50_TARGET_MS:.0f} ms",
        ok,
    )


def measure_worker_process(
    args: argparse.Namespace, home: Path, database_url: str | None = None
) -> Row:
    env = base_env(home, args.poll_s)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    server, base_url = start_server(home, env, "--no-worker")
    worker = None
    try:
        worker = start_worker(home, env)
        console.print(f"worker process: server ready on {base_url}, worker started (home {home})")
        ids, round_trips, statuses = run_requests(base_url, args.requests, args.warmup)
        latencies = waited(ids, [worker, server])
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    if database_url is not None:
        # PostgreSQL: the queuing transaction NOTIFYs the worker, no poll to wait for.
        return Row(
            "worker process, PostgreSQL",
            latencies,
            round_trips,
            statuses,
            f"p50 < {P50_TARGET_MS:.0f} ms",
            statistics.median(latencies) < P50_TARGET_MS,
        )
    limit = args.poll_s * 1000 + POLL_SLACK_MS
    return Row(
        "worker process, SQLite",
        latencies,
        round_trips,
        statuses,
        f"p95 < {limit:.0f} ms",
        percentile(latencies, 0.95) < limit,
    )


@contextlib.contextmanager
def postgres_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database for the run (dropped at the end); yields its SQLAlchemy URL."""
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


def report(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> bool:
    table = Table(
        title=(
            f"background dispatch latency: {args.requests} sequential requests per row "
            f"(+{args.warmup} warm-up), max_output_tokens=16, enqueue -> job started (waited_ms)"
        )
    )
    table.add_column("worker")
    for column in ("p50 ms", "p95 ms", "max ms", "min ms"):
        table.add_column(column, justify="right")
    table.add_column("client p50 ms", justify="right")
    table.add_column("statuses")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")
    for row in rows:
        table.add_row(
            row.label,
            f"{statistics.median(row.waited_ms):.1f}",
            f"{percentile(row.waited_ms, 0.95):.1f}",
            f"{max(row.waited_ms):.1f}",
            f"{min(row.waited_ms):.1f}",
            f"{statistics.median(row.round_trip_ms):.0f}",
            ", ".join(f"{k} {v}" for k, v in sorted(row.statuses.items())),
            row.target,
            "[green]PASS[/green]" if row.ok else "[red]FAIL[/red]",
        )
    console.print(table)
    console.print(
        "in-process: `serve` with its own worker; worker process: `serve --no-worker` + "
        f"`aiservice worker` (SQLite: polling, target its poll interval "
        f"({args.poll_s:g} s) + {POLL_SLACK_MS:.0f} ms; PostgreSQL: NOTIFY). "
        "client p50: POST sent -> GET says finished (includes the 16 tokens and this "
        "script's 10 ms polling).",
        highlight=False,
    )
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load[0]:.2f} before, {load[1]:.2f} after (this run adds ~1); "
        f"AISERVICE_WORKER_POLL_S={args.poll_s:g}",
        highlight=False,
    )
    return all(row.ok for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="measured requests per row")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured requests first")
    parser.add_argument(
        "--poll-s",
        type=float,
        default=0.5,
        help="AISERVICE_WORKER_POLL_S for both rows (default 0.5, the service's default)",
    )
    parser.add_argument(
        "--no-worker-process",
        action="store_true",
        help="only the in-process row (skip `serve --no-worker` + `aiservice worker`)",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin DSN of the PostgreSQL server for the PostgreSQL worker row ('' to skip)",
    )
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    homes: list[Path] = []
    rows: list[Row] = []
    try:
        homes.append(Path(tempfile.mkdtemp(prefix="aiservice-bench-bg-")))
        rows.append(measure_in_process(args, homes[-1]))
        if not args.no_worker_process:
            homes.append(Path(tempfile.mkdtemp(prefix="aiservice-bench-bgw-")))
            rows.append(measure_worker_process(args, homes[-1]))
            if args.postgres:
                homes.append(Path(tempfile.mkdtemp(prefix="aiservice-bench-bgp-")))
                with postgres_database(args.postgres) as url:
                    rows.append(measure_worker_process(args, homes[-1], url))
    finally:
        if not args.keep_home:
            for home in homes:
                shutil.rmtree(home, ignore_errors=True)
    ok = report(rows, args, (load_start, os.getloadavg()[0]))
    if args.json:
        samples = [
            {"row": r.label, "waited_ms": w, "round_trip_ms": t}
            for r in rows
            for w, t in zip(r.waited_ms, r.round_trip_ms, strict=True)
        ]
        args.json.write_text(json.dumps(samples, indent=2), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
