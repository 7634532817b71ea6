"""`aiservice privacy export|erase`: the export written to a file, an erasure that asks first,
and an erasure killed with SIGKILL mid-way on PostgreSQL, taken up by the next run of the
same command: every row deleted exactly once, counts exact, the ledger's totals unchanged."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from aiservice.store.database import Database
from aiservice.store.tables import AuditEntry, PrivacyErasure, StoredCompletion, UsageRecord
from privacy_support import count_where, seed_subject, usage_totals
from support import PostgresDatabases, run_cli, run_in_thread, wait_until

OWNER = "user_privacycli"


def sqlite_url(home: Path) -> str:
    return f"sqlite+aiosqlite:///{home / 'aiservice.db'}"


def migrate(home: Path, env: dict[str, str] | None = None) -> None:
    assert run_cli("db", "upgrade", home=home, env=env).returncode == 0


def audit_rows(url: str) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        database = Database(url)
        try:
            async with database.sessions() as session:
                return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        finally:
            await database.close()

    return run_in_thread(read)


def test_export_writes_the_subjects_objects_to_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    migrate(home)
    seed_subject(sqlite_url(home), OWNER, "user_id", "42", completions=3, usage=4)
    seed_subject(sqlite_url(home), OWNER, "user_id", "43", completions=2, usage=2)
    out = tmp_path / "subject-42.ndjson"
    done = run_cli("privacy", "export", "--subject", "user_id=42", "--out", str(out), home=home)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [line["object"] for line in lines]
    assert kinds.count("chat.completion") == 3 and kinds.count("usage.record") == 4
    assert lines[-1]["counts"] == {"chat.completion": 3, "usage.record": 4}
    assert all(line["metadata"] == {"user_id": "42"} for line in lines[1:-1])
    [entry] = [row for row in audit_rows(sqlite_url(home)) if row.action == "privacy.export"]
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.target == lines[0]["id"]
    assert "42" not in json.dumps(entry.details)  # the audit log names no subject


def test_a_bad_subject_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for subject in ("user_id", "feature=triage", "=42"):
        done = run_cli("privacy", "export", "--subject", subject, home=home)
        assert done.returncode != 0 and done.stdout == ""
        assert "subject" in done.stderr.lower() or "key" in done.stderr.lower(), done.stderr


def test_erase_asks_first_and_erases_nothing_when_not_confirmed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    migrate(home)
    seed_subject(sqlite_url(home), OWNER, "user_id", "42", completions=2, usage=2)
    done = run_cli("privacy", "erase", "--subject", "user_id=42", home=home, input="n\n")
    assert done.returncode == 1
    assert count_where(sqlite_url(home), StoredCompletion) == 2
    confirmed = run_cli("privacy", "erase", "--subject", "user_id=42", "--yes", home=home)
    assert confirmed.returncode == 0, confirmed.stderr
    assert "completed" in confirmed.stdout and "chat.completion" in confirmed.stdout
    assert count_where(sqlite_url(home), StoredCompletion) == 0


def test_an_erasure_killed_mid_way_is_taken_up_and_counts_every_row_once(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = postgres_databases.create()
    home = tmp_path / "home"
    env = {"DATABASE_URL": url, "AISERVICE_PRIVACY_ERASE_BATCH": "50", "AISERVICE_JOB_LEASE_S": "1"}
    migrate(home, env)
    completions, usage = 3000, 6000
    seed_subject(url, OWNER, "user_id", "42", completions=completions, usage=usage)
    seed_subject(url, OWNER, "user_id", "7", completions=10, usage=10)
    before = usage_totals(url)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AISERVICE_")}
    command = [sys.executable, "-m", "aiservice", "privacy", "erase", "--subject", "user_id=42"]
    killed = subprocess.Popen(
        [*command, "--yes"],
        env={**clean, "AISERVICE_HOME": str(home), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: count_where(url, StoredCompletion) < completions + 10,
            timeout=60,
            what="the erasure under way",
        )
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.wait()
    left = count_where(url, StoredCompletion)
    assert 10 < left < completions + 10, "killed before the end"
    [job] = erasures(url)
    assert job.status == "in_progress" and job.subject is not None
    assert job.deleted.get("chat.completion", 0) == completions + 10 - left  # counted with them

    resumed = run_cli("privacy", "erase", "--subject", "user_id=42", "--yes", home=home, env=env)
    assert resumed.returncode == 0, resumed.stderr
    [job] = erasures(url)  # the same job, taken up: not a second one
    assert job.status == "completed" and job.subject is None and job.subject_digest is None
    assert job.deleted == {"chat.completion": completions, "usage.record": usage}
    assert count_where(url, StoredCompletion) == 10  # the other subject's
    assert count_where(url, UsageRecord, UsageRecord.metadata_["user_id"].as_string() == "42") == 0
    assert usage_totals(url) == before


def erasures(url: str) -> list[PrivacyErasure]:
    async def read() -> list[PrivacyErasure]:
        database = Database(url)
        try:
            async with database.sessions() as session:
                return list(await session.scalars(select(PrivacyErasure)))
        finally:
            await database.close()

    return run_in_thread(read)
