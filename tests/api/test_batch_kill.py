"""A batch survives kill -9 of a worker on PostgreSQL: two `aiservice worker` processes share
one batch beside a server that runs none (`--no-worker`); one is killed mid-batch, and its
lines are taken over once their leases run out. Every custom_id comes out exactly once in
the output and error files, and the ledger holds exactly one row per line.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from openai import OpenAI
from test_response_background import start_worker, stop_worker

from aiservice.testing import FakeUpstream, Fault
from batch_support import chat_line, file_lines, submit, wait_for
from conftest import NO_DATABASE_URL
from support import MASTER_KEY, PostgresDatabases, start_server, stop_server, wait_until
from usage_support import read_table

LINES = 40


def test_a_worker_killed_mid_batch_loses_no_line_and_runs_none_twice(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    database_url = postgres_databases.create()
    env: dict[str, str | None] = {
        **NO_DATABASE_URL,
        "DATABASE_URL": database_url,
        "AISERVICE_JOB_LEASE_S": "2",
        "AISERVICE_WORKER_POLL_S": "0.1",
        "AISERVICE_WORKER_CONCURRENCY": "3",
    }
    home = tmp_path / "home"
    with FakeUpstream() as upstream:
        # Slow lines: the batch is still running when the worker dies.
        upstream.add_fault(Fault(path="/v1/chat/completions", first_byte_delay_s=0.2, times=None))
        home.mkdir()
        (home / "config.toml").write_text(
            f'[[models]]\nname = "smollm2-135m-instruct"\n\n[[models]]\nname = "remote"\n'
            f'provider = "openai"\nbase_url = "{upstream.base_url}"\n'
            'upstream_model = "gpt-4o-mini"\nprice_input_per_1m = 1.0\nmax_retries = 0\n',
            encoding="utf-8",
        )
        server = start_server(home, env=env, args=["--no-worker"])
        killed = start_worker(home, tmp_path / "killed.log", env=env)
        survivor = start_worker(home, tmp_path / "survivor.log", env=env)
        try:
            client = OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0)
            lines = [chat_line(f"c-{i}", "remote", f"q {i}") for i in range(LINES)]
            created = submit(client, lines)
            wait_until(
                lambda: client.batches.retrieve(created.id).request_counts.completed >= 8,
                timeout=60,
                what="some lines done",
            )
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()
            batch = wait_for(client, created.id, timeout=120)
            output = file_lines(client, batch.output_file_id)
            errors = file_lines(client, batch.error_file_id)
        finally:
            stop_worker(survivor)
            stop_worker(killed)
            stop_server(server)
    assert batch.status == "completed", batch
    seen = Counter(line["custom_id"] for line in output + errors)
    assert seen == Counter(f"c-{i}" for i in range(LINES))  # each exactly once
    assert errors == [] and batch.request_counts.completed == LINES
    rows = [row for row in read_table(database_url) if row["metadata"].get("batch_id") == batch.id]
    assert len(rows) == LINES
    assert len({row["request_id"] for row in rows}) == LINES
    assert {line["response"]["request_id"] for line in output} == {
        row["request_id"] for row in rows
    }
