"""No charge is lost to kill -9 (docs/governance.md, "When a process dies").

A background job's usage record is written in the transaction that finishes it, so a worker
killed right after it finished jobs has charged each exactly once; an interactive request's
record is journaled as it is taken, so a server killed before its next batch write has its
records written when it starts again. The batch interval is set to its longest (60 s) so that
nothing reaches the database by the batch path during a test.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import httpx
from test_response_background import (
    FINISHED,
    SHORT,
    URL,
    kill,
    raw_client,
    start_worker,
    stop_worker,
    wait_terminal,
)

from conftest import NO_DATABASE_URL
from support import (
    MASTER_KEY,
    PostgresDatabases,
    start_server,
    stop_server,
    wait_for_access_line,
    wait_until,
)
from usage_support import read_table, table_rows

SLOW_BATCHES: dict[str, str | None] = {
    "AISERVICE_LEDGER_FLUSH_S": "60",
    "AISERVICE_LEDGER_BATCH_SIZE": "100000",
}


def test_a_worker_killed_right_after_finishing_jobs_charged_each_exactly_once(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    database_url = postgres_databases.create()
    env: dict[str, str | None] = {
        **NO_DATABASE_URL,
        **SLOW_BATCHES,
        "DATABASE_URL": database_url,
        "AISERVICE_JOB_LEASE_S": "2",
        # Without the journal, which would also save the records at the next start: the job's
        # own transaction must be what charges it.
        "AISERVICE_LEDGER_JOURNAL": "false",
    }
    home = tmp_path / "home"
    server = start_server(home, env=env, args=["--no-worker"])
    killed = start_worker(home, tmp_path / "killed.log", env=env)
    survivor = None
    try:
        with raw_client(server) as http:
            request_ids: dict[str, str] = {}
            for _ in range(12):
                request_id = f"req-job-{uuid.uuid4().hex[:12]}"
                answer = http.post(
                    URL, json={**SHORT, "background": True}, headers={"x-request-id": request_id}
                )
                assert answer.status_code == 200, answer.text
                request_ids[answer.json()["id"]] = request_id

            def finished_by_the_first_worker() -> list[str] | None:
                done = [
                    line["response_id"]
                    for line in killed.log_lines()
                    if line.get("message") == FINISHED and line.get("status") == "completed"
                ]
                return done if len(done) >= 3 else None

            charged_then_killed = wait_until(
                finished_by_the_first_worker, timeout=120, what="three jobs finished"
            )
            killed.process.kill()
            killed.process.wait()
            survivor = start_worker(home, tmp_path / "survivor.log", env=env)
            statuses = {rid: wait_terminal(http, rid, timeout=180)["status"] for rid in request_ids}
    finally:
        for worker in (killed, survivor):
            if worker is not None:
                stop_worker(worker)
        stop_server(server)

    assert set(statuses.values()) == {"completed"}, statuses
    job_rows = [row for row in read_table(database_url) if row["background"]]
    charges = Counter(row["request_id"] for row in job_rows)
    assert charges == Counter(request_ids.values()), charges  # every job, once
    for response_id in charged_then_killed:
        assert charges[request_ids[response_id]] == 1
    assert all(row["status_code"] == 200 and row["output_tokens"] > 0 for row in job_rows)


def test_a_killed_server_writes_its_journaled_records_when_it_starts_again(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {**NO_DATABASE_URL, **SLOW_BATCHES}
    first = start_server(home, env=env, log_path=tmp_path / "first.log")
    request_ids = [f"req-chat-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    try:
        with raw_client(first) as http:
            for request_id in request_ids:
                answer = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "smollm2-135m-instruct",
                        "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 4,
                    },
                    headers={"x-request-id": request_id},
                )
                assert answer.status_code == 200, answer.text
                wait_for_access_line(first, request_id)  # its record has been taken
    finally:
        kill(first)
    database_url = f"sqlite+aiosqlite:///{home / 'aiservice.db'}"
    assert not [row for row in read_table(database_url) if row["request_id"] in request_ids]

    second = start_server(home, env=env, log_path=tmp_path / "second.log")
    try:
        charges = Counter(row["request_id"] for row in table_rows(second))
        assert all(charges[request_id] == 1 for request_id in request_ids), charges
        answer = httpx.get(
            f"{second.base_url}/v1/usage",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=30,
        )
        assert answer.json()["data"][0]["requests"] >= len(request_ids)
    finally:
        stop_server(second)
    assert list((home / "usage-journal").iterdir()) == []  # the clean stop left nothing
