"""The soak harness's invariants (tests/system/soak_harness.py), each one row of the table:
what was expected, what was observed, PASS or FAIL. They read the client's log of every request
(soak_load.Outcome), nginx's access log (which upstream served each request id), the kills,
and the database as the processes left it (soak_snapshot.Snapshot)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from soak_cluster import Timings
from soak_load import PACE, RPM, Account, Created, Outcome
from soak_snapshot import Snapshot

KILL_WINDOW_S = 1.0  # an error counts as the kill's when its request was in flight this close
STALL_BOUND_S = 5.0  # no request not cut by a kill may take longer
BUDGET_SLACK_S = 1.0  # on top of ledger_flush_s + budget_refresh_s: scheduling, the DB write
LIMITED = {*RPM, "budget-key", "budget-user"}  # the accounts whose 429s are expected
TERMINAL_LINES = {"succeeded", "failed"}


@dataclass(frozen=True)
class Row:
    name: str
    expected: str
    observed: str
    ok: bool


@dataclass(frozen=True)
class Kill:
    name: str  # server-1, worker-2…
    port: int | None  # a server's; None for a worker
    killed_at: float
    restarted_at: float
    ready_at: float
    note: str = ""  # what it was doing when killed


@dataclass
class Evidence:
    """Everything the invariants are computed from."""

    outcomes: list[Outcome]
    created: Created
    accounts: dict[str, Account]
    amounts: dict[str, float]
    kills: list[Kill]
    nginx: dict[str, dict[str, Any]]  # request id → nginx's access line
    snapshot: Snapshot
    timings: Timings
    records_by_request: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.records_by_request = Counter(r["request_id"] for r in self.snapshot.usage)

    @property
    def server_kills(self) -> list[Kill]:
        return [kill for kill in self.kills if kill.port is not None]


def all_rows(evidence: Evidence) -> list[Row]:
    return [
        background_jobs(evidence),
        batch_lines(evidence),
        *rate_limits(evidence),
        *budgets(evidence),
        errors_only_at_the_kill(evidence),
        expected_statuses(evidence),
        charges(evidence),
        nothing_twice(evidence),
        no_stall(evidence),
        written_data_survives(evidence),
        conversations(evidence),
    ]


# --- background work ---------------------------------------------------------------------


def background_jobs(evidence: Evidence) -> Row:
    """Every accepted background response ended, once: completed, one usage record, one answer."""
    accepted = evidence.created.background
    jobs = evidence.snapshot.responses
    statuses = Counter(jobs[rid]["status"] if rid in jobs else "missing" for rid in accepted)
    records = Counter(evidence.records_by_request[req] for req in accepted.values())
    outputs = Counter(len(jobs[rid]["texts"]) for rid in accepted if rid in jobs)
    retried = sum(1 for rid in accepted if rid in jobs and jobs[rid]["attempts"] > 1)
    ok = (
        statuses == Counter({"completed": len(accepted)})
        and records == Counter({1: len(accepted)})
        and outputs == Counter({1: len(accepted)})
        and all(jobs[rid]["texts"] == ["Fake reply to: background soak job"] for rid in accepted)
        and len(accepted) > 0
    )
    return Row(
        "background responses: terminal once",
        "every accepted one completed, 1 usage record, 1 output",
        f"{len(accepted)} accepted: {_counts(statuses)}; records/job {_counts(records)}; "
        f"outputs/job {_counts(outputs)}; {retried} re-run after the worker kill",
        ok,
    )


def batch_lines(evidence: Evidence) -> Row:
    """Every line of every batch ended once, with one usage record and one output line."""
    problems: list[str] = []
    total = retried = 0
    for batch_id, submitted in evidence.created.batches.items():
        batch = evidence.snapshot.batches.get(batch_id)
        if batch is None:
            problems.append(f"{batch_id} missing")
            continue
        lines = batch["lines"]
        total += len(lines)
        retried += sum(1 for line in lines if line["attempts"] > 1)
        records = evidence.snapshot.batch_records.get(batch_id, [])
        answered = [line["request_id"] for line in lines if line["request_id"]]
        in_files = Counter(batch["file_custom_ids"])
        checks = {
            "status": batch["status"] == "completed",
            "lines": len(lines) == submitted,
            "terminal": all(line["state"] in TERMINAL_LINES for line in lines),
            "records": len(records) == submitted,
            "charged once": all(Counter(records)[r] == 1 for r in answered),
            "files": sorted(in_files) == sorted(f"line-{i}" for i in range(submitted))
            and set(in_files.values()) == {1},
        }
        problems += [f"{batch_id}: {name}" for name, passed in checks.items() if not passed]
    return Row(
        "batch lines: terminal once",
        "each line ended once: 1 usage record, in 1 output file",
        f"{len(evidence.created.batches)} batches, {total} lines, {retried} re-run"
        + (f"; {', '.join(problems)}" if problems else ": all once"),
        not problems and total > 0,
    )


# --- governance --------------------------------------------------------------------------


def rate_limits(evidence: Evidence) -> list[Row]:
    """Per limited key: the admitted requests (a record not 429) of every 60 s span, across
    both servers, each at the time its client sent it (a background job's record is written
    when the job ends). A request cut by a kill left no record: whether it was admitted is not
    known, so it is shown, not counted."""
    sent = {o.request_id: o.started for o in evidence.outcomes}
    rows = []
    for label, rpm in RPM.items():
        key_id = evidence.accounts[label].key_id
        records = [r for r in evidence.snapshot.usage if r["key_id"] == key_id]
        admitted = sorted(
            sent.get(r["request_id"], r["created_at"]) for r in records if r["status_code"] != 429
        )
        recorded = {r["request_id"] for r in records}
        unknown = sum(
            1
            for o in evidence.outcomes
            if o.account == label and o.model_route and o.failed and o.request_id not in recorded
        )
        refused = sum(1 for r in records if r["status_code"] == 429)
        peak = max_in_window(admitted, 60.0)
        rows.append(
            Row(
                f"rate limit {label} (rpm {rpm})",
                f"≤ {rpm} admitted in any 60 s, some refused",
                f"max {peak} in 60 s; {len(admitted)} admitted, {refused} refused (429), "
                f"{unknown} cut by the kill",
                peak <= rpm and refused > 0,
            )
        )
    return rows


def max_in_window(times: list[float], width: float) -> int:
    """The most of the sorted `times` that any span [t, t + width) holds."""
    peak, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - width:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def budgets(evidence: Evidence) -> list[Row]:
    rows = []
    window = evidence.timings.ledger_flush_s + evidence.timings.budget_refresh_s + BUDGET_SLACK_S
    for label, amount in evidence.amounts.items():
        key_id = evidence.accounts[label].key_id
        charged = [r for r in evidence.snapshot.usage if r["key_id"] == key_id and r["cost_usd"]]
        rows.append(_budget_row(label, amount, charged, window))
    return rows


def _budget_row(label: str, amount: float, charged: list[dict], window: float) -> Row:
    """The spend crossed `amount` at T (the end of the request that reached it). Other
    processes learn it within ledger_flush_s + budget_refresh_s: no request may be admitted
    after T + that window, and the overshoot is at most what one thread had in flight plus what
    its pace sent in the window (docs/governance.md, "Overshoot", "Several processes")."""
    name, expected = f"budget {label} (${amount:.3f})", "crossed; overshoot ≤ in flight"
    if not charged:
        return Row(name, expected, "nothing charged", False)
    ends = sorted(charged, key=lambda r: r["created_at"] + r["latency_ms"] / 1000)
    spent, crossed_at = 0.0, None
    for record in ends:
        spent += record["cost_usd"]
        if crossed_at is None and spent >= amount - 1e-9:  # float sums
            crossed_at = record["created_at"] + record["latency_ms"] / 1000
    if crossed_at is None:
        return Row(name, expected, f"spent ${spent:.4f}: never crossed", False)
    top = max(r["cost_usd"] for r in charged)
    bound = top * (2 + math.ceil(PACE[label] * window))  # the crossing one, 1 in flight, paced
    late = max(r["created_at"] for r in charged) - crossed_at
    observed = (
        f"spent ${spent:.4f}: overshoot ${max(0.0, spent - amount):.4f} ≤ ${bound:.4f}; "
        f"last admitted {late:+.2f} s after crossing (≤ {window:.1f} s)"
    )
    return Row(name, expected, observed, spent - amount <= bound + 1e-9 and late <= window)


# --- what clients saw --------------------------------------------------------------------


def in_flight_at(outcome: Outcome, kill: Kill) -> bool:
    return outcome.started <= kill.killed_at + KILL_WINDOW_S and outcome.ended >= kill.killed_at


def explained_by_a_kill(evidence: Evidence, outcome: Outcome) -> bool:
    """The request went to a killed server (nginx says which upstream) while it died."""
    line = evidence.nginx.get(outcome.request_id)
    if line is None:
        return False
    return any(
        f"127.0.0.1:{kill.port}" in line["up"] and in_flight_at(outcome, kill)
        for kill in evidence.server_kills
    )


def errors_only_at_the_kill(evidence: Evidence) -> Row:
    failed = [o for o in evidence.outcomes if o.failed]
    explained = [o for o in failed if explained_by_a_kill(evidence, o)]
    other = [o for o in failed if o not in explained]
    kinds = Counter(o.error or str(o.status) for o in failed)
    sample = ", ".join(f"{o.kind} {o.error or o.status} {o.request_id}" for o in other[:3])
    return Row(
        "client errors only at the server kill",
        "5xx / cut connections only to the killed server, ≤ 1 s from its death",
        f"{len(failed)} errors ({_counts(kinds) or 'none'}): {len(explained)} at the kill, "
        f"{len(other)} otherwise" + (f" [{sample}]" if sample else ""),
        not other,
    )


def expected_statuses(evidence: Evidence) -> Row:
    """Besides the kill's errors: 200 everywhere, 429 only on limited keys, never a 5xx."""
    odd = Counter(
        f"{o.kind}:{o.status}"
        for o in evidence.outcomes
        if o.status is not None
        and not o.failed
        and not (o.status == 200 or (o.status == 429 and o.account in LIMITED))
    )
    fives = sum(1 for o in evidence.outcomes if o.status and o.status >= 500)
    excused = sum(1 for o in evidence.outcomes if o.failed and explained_by_a_kill(evidence, o))
    return Row(
        "statuses",
        "200; 429 only on limited keys; no 5xx but the kill's",
        f"{len(evidence.outcomes)} requests; {fives} 5xx ({excused} errors at the kill)"
        + (f"; unexpected {_counts(odd)}" if odd else ""),
        not odd and fives <= excused,
    )


def charges(evidence: Evidence) -> Row:
    """Every model request answered in full has exactly one usage record (the killed server's
    included: its journal was replayed when it started again); none has two."""
    answered = [
        o
        for o in evidence.outcomes
        if o.model_route and not o.failed and not (o.kind == "background" and o.status == 200)
    ]
    counts = Counter(evidence.records_by_request[o.request_id] for o in answered)
    cut = [o for o in evidence.outcomes if o.model_route and o.failed]
    cut_records = Counter(evidence.records_by_request[o.request_id] for o in cut)
    duplicates = [rid for rid, n in evidence.records_by_request.items() if n > 1]
    ok = set(counts) == {1} and max(cut_records, default=0) <= 1 and not duplicates
    return Row(
        "no charge lost, none twice",
        "1 usage record per answered model request; ≤ 1 per cut one",
        f"{len(answered)} answered: records {_counts(counts)}; {len(cut)} cut: "
        f"{_counts(cut_records) or 'none'}; {len(duplicates)} request ids charged twice",
        ok,
    )


def nothing_twice(evidence: Evidence) -> Row:
    """No request was carried out twice: one stored completion or response per request id.
    (nginx passes a POST on to the other server only when it could not be sent to the first:
    deploy/nginx.conf keeps `proxy_next_upstream`'s default, without `non_idempotent`.)"""
    passed_on = sum(
        1 for line in evidence.nginx.values() if line["m"] == "POST" and "," in line["up"]
    )
    twice = evidence.snapshot.twice
    return Row(
        "no request carried out twice",
        "1 stored completion or response per request id",
        f"{evidence.snapshot.objects} objects, {len(twice)} request ids with more; "
        f"{passed_on} POSTs nginx passed on to the other server",
        not twice,
    )


def no_stall(evidence: Evidence) -> Row:
    latencies = [
        o.ended - o.started
        for o in evidence.outcomes
        if not any(in_flight_at(o, kill) for kill in evidence.server_kills)
    ]
    if not latencies:
        return Row("no request stalls", f"max ≤ {STALL_BOUND_S:g} s", "no requests", False)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Row(
        "no request stalls",
        f"max latency ≤ {STALL_BOUND_S:g} s (requests not in flight at a kill)",
        f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)}",
        max(latencies) <= STALL_BOUND_S,
    )


# --- stored data -------------------------------------------------------------------------


def written_data_survives(evidence: Evidence) -> Row:
    """Everything a 200 said was stored is in the database at the end, what was acknowledged
    before a kill included."""
    created, snapshot = evidence.created, evidence.snapshot
    kinds: dict[str, tuple[Iterable[str], set[str]]] = {
        "stored completions": (created.stored, snapshot.stored_completions),
        "background responses": (created.background, set(snapshot.responses)),
        "conversations": (created.conversations, snapshot.conversations_present),
        "batches": (created.batches, set(snapshot.batches)),
    }
    missing: dict[str, int] = {}
    before = 0
    first_kill = min((k.killed_at for k in evidence.kills), default=math.inf)
    for kind, (acknowledged, present) in kinds.items():
        ids = list(acknowledged)
        missing[kind] = sum(1 for i in ids if i not in present)
        before += sum(1 for i in ids if created.acknowledged_at.get(i, math.inf) < first_kill)
    stored_ok = all(
        snapshot.stored_replies.get(cid) == text for cid, text in created.stored.items()
    )
    total = sum(len(list(a)) for a, _ in kinds.values())
    lost = {kind: n for kind, n in missing.items() if n}
    return Row(
        "data written before a kill survives",
        "every acknowledged object present, unchanged",
        f"{total} objects ({before} before the first kill): "
        + (f"missing {lost}" if lost else "all present")
        + ("" if stored_ok else "; stored replies differ"),
        not lost and stored_ok and before > 0,
    )


def conversations(evidence: Evidence) -> Row:
    """Each conversation holds its answered turns (input + output item each), no item twice;
    a turn cut by the kill added both of its items or neither."""
    bad = []
    for conversation_id, outputs in evidence.created.conversations.items():
        items = evidence.snapshot.conversation_items.get(conversation_id, [])
        cut = evidence.created.unanswered_turns.get(conversation_id, 0)
        extra = len(items) - 2 * len(outputs)
        if (
            len(set(items)) != len(items)
            or not set(outputs) <= set(items)
            or extra not in range(0, 2 * cut + 1, 2)
        ):
            bad.append(conversation_id)
    count = len(evidence.created.conversations)
    turns = sum(len(v) for v in evidence.created.conversations.values())
    return Row(
        "conversations: every turn kept once",
        "2 items per answered turn, none twice",
        f"{count} conversations, {turns} answered turns: "
        + (f"{len(bad)} wrong ({', '.join(bad[:3])})" if bad else "all consistent"),
        not bad and count > 0,
    )


def _counts(counter: Counter[Any]) -> str:
    """`value: count` pairs, e.g. `completed: 40` or `1: 310` (records per request)."""
    ordered = sorted(counter.items(), key=lambda kv: str(kv[0]))
    return ", ".join(f"{key}: {n}" for key, n in ordered)
