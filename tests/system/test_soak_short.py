"""The scale-out soak, short (tests/system/soak_harness.py; the long run is
benchmarks/soak.py): two servers and two workers behind nginx on a fresh PostgreSQL database
and Redis, 25 s of mixed load from keys with rpm limits and budgets, one worker and one server
killed with SIGKILL mid-run and restarted. Every invariant of the table must hold."""

from __future__ import annotations

from soak_harness import run

LOAD_S = 25.0


def test_the_cluster_keeps_its_invariants_through_kills(tmp_path) -> None:
    report = run(LOAD_S, root=tmp_path / "soak")
    print(report.table())  # shown with -s, and with the failure below
    assert report.passed, "\n".join(
        [f"{row.name}: {row.observed}" for row in report.failures]
        + ["", report.table(), f"logs: {tmp_path / 'soak'}"]
    )
