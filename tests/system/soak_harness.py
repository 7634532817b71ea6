"""A bounded soak of the scaled-out service: two `aiservice serve --no-worker` and two
`aiservice worker` on a fresh PostgreSQL database and one Redis database, behind Debian's nginx,
a fake OpenAI upstream as the model. A mixed load runs from several keys (rpm limits, a key
budget, a user budget) for `duration_s`; mid-run one worker and then one server are killed
with SIGKILL and started again. Then the invariants (soak_checks.py) are computed and returned
as a Report whose table has one row each.

    report = run(25)            # tests/system/test_soak_short.py
    print(report.table())

From the command line: `.venv/bin/python benchmarks/soak.py --duration 300`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from soak_checks import Evidence, Kill, Row, all_rows
from soak_cluster import Cluster, Process, nginx_fail_timeout
from soak_load import CLIENT_TIMEOUT_S, Load, make_accounts
from soak_snapshot import batch_file_custom_ids, read_database, wait_busy, wait_drained

RESTART_AFTER_S = 1.5  # how long a killed process stays dead
DRAIN_TIMEOUT_S = 90.0  # for the background work still open when the load stops
BUSY_WAIT_S = 3.0
KILL_BATCH_LINES = 150  # the batch submitted as a worker is about to be killed
REPLAYED = "usage records replayed from a stopped process's journal"


@dataclass
class Report:
    rows: list[Row]
    stats: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # the run's logs, when kept

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    def table(self) -> str:
        """The invariants as a Markdown table, then the run's numbers."""
        lines = ["| invariant | expected | observed | result |", "|---|---|---|---|"]
        for row in self.rows:
            cells = [row.name, row.expected, row.observed, "PASS" if row.ok else "FAIL"]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
        lines += [f"- {name}: {value}" for name, value in self.stats.items()]
        return "\n".join(lines)


def default_rounds(duration_s: float) -> int:
    """Kill rounds (one worker, then one server, each): one, and one more per 100 s."""
    return 1 + int(duration_s // 100)


def run(
    duration_s: float = 25.0,
    *,
    root: Path | None = None,
    redis_db: int = 9,
    kill_rounds: int | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> Report:
    """Bring the cluster up, load it for `duration_s` with kills, check, take it all down.
    Without `root` the logs go to a temporary directory, deleted when every row passed."""
    owned = root is None
    root = Path(tempfile.mkdtemp(prefix="aiservice-soak-")) if root is None else root
    cluster = Cluster(root, redis_db=redis_db)
    report = Report([], root=root)
    try:
        report = _run(cluster, duration_s, kill_rounds or default_rounds(duration_s), log)
        report.root = root
    finally:
        cluster.close()
        if owned and report.passed:
            shutil.rmtree(root, ignore_errors=True)
            report.root = None
    return report


def _run(cluster: Cluster, duration_s: float, rounds: int, log: Callable[[str], None]) -> Report:
    began = time.monotonic()
    cluster.start()
    startup_s = time.monotonic() - began
    log(f"soak: cluster up in {startup_s:.1f} s at {cluster.url} ({cluster.root})")
    accounts, amounts = make_accounts(cluster.url, duration_s)
    start = time.monotonic()
    deadline = start + duration_s
    plan = kill_plan(cluster, start, duration_s, rounds)
    load = Load(cluster.url, accounts, deadline)
    start_wall = time.time()
    load.start(batch_times=[start + 0.1 * duration_s])  # and one at each worker kill
    kills, skipped = run_kills(cluster, plan, load, log)
    load.join(deadline - time.monotonic() + CLIENT_TIMEOUT_S + 5)
    log(f"soak: load done, {len(load.outcomes)} requests; draining the background work")
    drained_from = time.monotonic()
    still_open = wait_drained(
        cluster.postgres_dsn,
        list(load.created.background),
        list(load.created.batches),
        DRAIN_TIMEOUT_S,
    )
    drain_s = time.monotonic() - drained_from
    files = batch_file_custom_ids(cluster.url, accounts["batcher"].key, list(load.created.batches))
    exit_codes = cluster.stop_aiservice()
    snapshot = read_database(cluster.postgres_dsn, files)
    nginx = {line["rid"]: line for line in cluster.nginx_log() if line["rid"]}
    keep_evidence(cluster.root, load, snapshot.usage)
    evidence = Evidence(
        load.outcomes, load.created, accounts, amounts, kills, nginx, snapshot, cluster.timings
    )
    rows = [
        kills_row(kills, skipped, began_at=start_wall, ended_at=start_wall + duration_s),
        *all_rows(evidence),
        drained_row(still_open, drain_s),
        clean_stop_row(exit_codes, cluster.journal_leftovers()),
    ]
    stats = run_stats(evidence, cluster, start, duration_s, startup_s)
    return Report(rows, stats)


def keep_evidence(root: Path, load: Load, usage: list[dict]) -> None:
    """The client's log and the usage records as JSON lines beside the processes' logs, for
    a failed row's post-mortem (the database is dropped at the end)."""
    with (root / "outcomes.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(dataclasses.asdict(o)) + "\n" for o in load.outcomes)
    with (root / "usage.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(record, default=str) + "\n" for record in usage)


Round = list[tuple[float, Process]]  # when (time.monotonic()) to kill what: a worker, a server


def kill_plan(cluster: Cluster, start: float, duration_s: float, rounds: int) -> list[Round]:
    """Each round a worker, then a server, in the middle half of the run, after the budgets
    have been crossed (at a quarter)."""
    span = 0.5 / rounds
    plan = []
    for index in range(rounds):
        at = 0.35 + index * span
        worker = (start + at * duration_s, cluster.workers[index % 2])
        plan.append([worker, (start + (at + 0.3 * span) * duration_s, cluster.servers[index % 2])])
    return plan


def run_kills(
    cluster: Cluster, plan: list[Round], load: Load, log: Callable[[str], None]
) -> tuple[list[Kill], int]:
    """Carry out the rounds; returns the kills and the rounds skipped. A round waits until
    nginx tries the previous round's server again (its `fail_timeout` after the server came
    back): killing the other server before would leave nginx with no live upstream, a 502 for
    every request meanwhile, which is nginx's doing, not the kill's. A round that could not
    end before the load does is skipped."""
    kills: list[Kill] = []
    skipped, not_before = 0, 0.0
    retry_after = nginx_fail_timeout() + 1
    for entries in plan:
        shift = max(0.0, not_before - entries[0][0])
        if entries[-1][0] + shift > load.deadline - 2:
            log("soak: kill round skipped: the previous one's server came back too late")
            skipped += 1
            continue
        done = run_round(cluster, [(at + shift, p) for at, p in entries], load, log)
        kills += done
        back = max(k.ready_at for k in done if k.port is not None)
        not_before = time.monotonic() + max(0.0, retry_after - (time.time() - back))
    return sorted(kills, key=lambda kill: kill.killed_at), skipped


def run_round(
    cluster: Cluster, entries: Round, load: Load, log: Callable[[str], None]
) -> list[Kill]:
    """One thread per process, so that a slow restart delays no other kill."""
    kills: list[Kill] = []
    failures: list[BaseException] = []

    def kill_one(at: float, process: Process) -> None:
        try:
            kills.append(kill_and_restart(cluster, process, at, load, log))
        except BaseException as error:  # re-raised in the caller's thread
            failures.append(error)

    threads = [
        threading.Thread(target=kill_one, args=entry, name=f"kill:{entry[1].name}")
        for entry in entries
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return kills


def kill_and_restart(
    cluster: Cluster, process: Process, at: float, load: Load, log: Callable[[str], None]
) -> Kill:
    time.sleep(max(0.0, at - time.monotonic()))  # the schedule: the load runs meanwhile
    note = ""
    if process.port is None and process.popen is not None:
        # A worker is killed while it runs a background response and batch lines (a batch
        # submitted now; at most BUSY_WAIT_S later), so that their takeover is what is tested.
        load.batch_now(KILL_BATCH_LINES)
        prefix = f"{socket.gethostname()}-{process.popen.pid}-"
        jobs, lines = wait_busy(cluster.postgres_dsn, prefix, BUSY_WAIT_S)
        note = f"running {jobs} background response(s), {lines} batch line(s)"
    killed_at = process.kill()
    log(f"soak: SIGKILL {process.name} {note}")
    time.sleep(RESTART_AFTER_S)  # dead for a while, as a crashed process is
    restarted_at = time.time()
    process.launch()
    process.wait_ready()
    ready_at = time.time()
    log(f"soak: {process.name} restarted, ready in {ready_at - restarted_at:.1f} s")
    return Kill(process.name, process.port, killed_at, restarted_at, ready_at, note)


def kills_row(kills: list[Kill], skipped: int, *, began_at: float, ended_at: float) -> Row:
    """The kills happened while the load ran (else the rows about them prove nothing)."""
    during = [k for k in kills if began_at < k.killed_at < ended_at]
    servers = [k for k in during if k.port is not None]
    return Row(
        "kills during the load",
        "workers and servers killed while requests run, each restarted",
        f"{len(during)} of {len(kills)} during the load ({len(servers)} servers"
        + (f"; {skipped} rounds skipped" if skipped else "")
        + "); restarts ready after "
        + ", ".join(f"{k.ready_at - k.killed_at:.1f} s" for k in kills),
        len(during) == len(kills) and 0 < len(servers) < len(kills),
    )


def drained_row(still_open: dict[str, int], drain_s: float) -> Row:
    return Row(
        "background work drains",
        f"all ended within {DRAIN_TIMEOUT_S:g} s of the load's end",
        f"{drain_s:.1f} s; still open: {still_open}",
        not any(still_open.values()),
    )


def clean_stop_row(exit_codes: dict[str, int | None], leftovers: dict[str, int]) -> Row:
    """uvicorn ends a server stopped by SIGTERM by raising the signal again once it has shut
    down (exit status -15); a worker returns 0. A clean stop leaves no journal behind."""
    clean = (0, -signal.SIGTERM)
    return Row(
        "clean stop at the end",
        "SIGTERM: every process ends (0, or the signal re-raised), its journal emptied",
        ", ".join(f"{name}: {code}" for name, code in exit_codes.items())
        + f"; journal files left: {sum(leftovers.values())}",
        all(code in clean for code in exit_codes.values()) and not any(leftovers.values()),
    )


def run_stats(
    evidence: Evidence, cluster: Cluster, start: float, duration_s: float, startup_s: float
) -> dict[str, str]:
    outcomes = evidence.outcomes
    began = min((o.started for o in outcomes), default=0.0)
    kinds = Counter(o.kind for o in outcomes)
    replayed = sum(
        line.get("records", 0)
        for process in cluster.servers
        for start_number in range(2, process.starts + 1)
        for line in process.log_lines(start_number)
        if line.get("message") == REPLAYED
    )
    kills = "; ".join(
        f"{k.name} at +{k.killed_at - began:.1f} s{' (' + k.note + ')' if k.note else ''}, "
        f"serving again after {k.ready_at - k.killed_at:.1f} s"
        for k in evidence.kills
    )
    return {
        "load": f"{duration_s:g} s, {len(outcomes)} requests "
        f"({len(outcomes) / duration_s:.0f}/s): "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())),
        "kills": kills,
        "usage records replayed from killed servers' journals": str(replayed),
        "usage records in the database": str(len(evidence.snapshot.usage)),
        "start-up": f"{startup_s:.1f} s (PostgreSQL database, Redis, fake upstream, "
        "2 servers, 2 workers, nginx)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--redis-db", type=int, default=9, help="Redis database number")
    parser.add_argument("--kill-rounds", type=int, default=None, help="worker+server kills")
    parser.add_argument("--root", type=Path, default=None, help="keep the logs here")
    args = parser.parse_args(argv)
    report = run(
        args.duration, root=args.root, redis_db=args.redis_db, kill_rounds=args.kill_rounds
    )
    print(report.table())
    if report.root is not None:
        print(f"\nlogs: {report.root}")
    return 0 if report.passed else 1
