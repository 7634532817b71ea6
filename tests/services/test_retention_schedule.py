"""Retention enforced by the workers, against real processes on SQLite and PostgreSQL: a
server that runs workers purges every kind on its schedule (rows older than their kind's
retention go, younger ones stay, the metric and the log count them without content); a server
started with --no-worker leaves it to an `aiservice worker` process; `aiservice purge` prints
its counts per kind, and waits its turn on PostgreSQL; the `[retention]` section falls back on
the top-level settings older configurations set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from aiservice.services.retention import purge_interval_s, retention_days
from aiservice.settings import Settings
from aiservice.store.retention import PURGE_LOCK_KEY
from retention_support import TABLES, ids_left, seed_in_thread
from support import (
    PostgresDatabases,
    RunningServer,
    run_cli,
    run_in_thread,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import database_url_of

# Each kind's retention on these servers, in days; the rows seeded are twice as old (purged)
# or half as old (kept).
DAYS = {
    "chat_completions": 30,
    "responses": 30,
    "conversations": 60,
    "document_analyses": 20,
    "batches": 30,
    "files": 10,
    "usage_records": 400,
}
RETENTION_ENV = {
    "AISERVICE_RETENTION__PURGE_INTERVAL_S": "0.2",
    "AISERVICE_RETENTION__CONVERSATIONS_DAYS": "60",
    "AISERVICE_RETENTION__DOCUMENT_ANALYSES_DAYS": "20",
    "AISERVICE_RETENTION__FILES_DAYS": "10",
    "AISERVICE_RETENTION__USAGE_DAYS": "400",
}
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


def backend_env(backend: str, postgres: PostgresDatabases) -> dict[str, str | None]:
    if backend == "sqlite":
        return dict(NO_DATABASE_URL)
    return {**NO_DATABASE_URL, "DATABASE_URL": postgres.create()}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def purging_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> Iterator[RunningServer]:
    """A server running the workers, purging every 0.2 s."""
    env = {**backend_env(request.param, postgres_databases), **RETENTION_ENV}
    running = start_server(tmp_path_factory.mktemp(f"retention-{request.param}"), env=env)
    yield running
    stop_server(running)


def purged_metric(server: RunningServer) -> dict[str, float]:
    response = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "aiservice_retention_purged_rows_total"
    }


def purge_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("message") == "retention purge"]


def test_the_worker_purges_each_kind_past_its_retention_on_its_schedule(
    purging_server: RunningServer,
):
    url = database_url_of(purging_server)
    old = seed_in_thread(url, "owner-old", {kind: 2 * days for kind, days in DAYS.items()})
    young = seed_in_thread(url, "owner-young", {kind: days / 2 for kind, days in DAYS.items()})

    def all_old_rows_gone() -> bool:
        return not any(ids_left(url, kind, ids) for kind, ids in old.ids.items())

    wait_until(all_old_rows_gone, timeout=30, what="the old rows of every kind purged")
    for kind, ids in young.ids.items():
        assert ids_left(url, kind, ids) == set(ids), kind
    # This server's database held nothing else that old: one row of each kind.
    assert purged_metric(purging_server) == dict.fromkeys(TABLES, 1.0)
    lines = purge_lines(purging_server.log_lines())
    assert sorted(line["kind"] for line in lines) == sorted(TABLES)
    assert all(line["purged"] == 1 and line["level"] == "INFO" for line in lines), lines
    assert "personal" not in purging_server.log_path.read_text()


def start_worker(server: RunningServer, log_path: Path) -> subprocess.Popen[bytes]:
    """`aiservice worker` on the server's home and database, logging to `log_path`."""
    env = {**os.environ, "AISERVICE_HOME": str(server.home)}
    for name in ("AISERVICE_DATABASE_URL", "DATABASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    env.update(RETENTION_ENV)
    if server.database_url:
        env["DATABASE_URL"] = server.database_url
    return subprocess.Popen(
        [sys.executable, "-m", "aiservice", "worker"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


def log_lines(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_server_without_workers_leaves_the_purge_to_a_worker_process(
    backend: str, tmp_path: Path, postgres_databases: PostgresDatabases
):
    env = {**backend_env(backend, postgres_databases), **RETENTION_ENV}
    server = start_server(tmp_path / "home", env=env, args=["--no-worker"])
    worker: subprocess.Popen[bytes] | None = None
    try:
        url = database_url_of(server)
        old = seed_in_thread(url, "owner-old", {"chat_completions": 60, "responses": 60})
        # The server purges every 0.2 s if it purges at all: the worker's start-up (its model
        # loaded first) gives it many rounds to do so before the worker can.
        worker = start_worker(server, tmp_path / "worker.log")

        def gone() -> bool:
            assert worker is not None and worker.poll() is None, (
                tmp_path / "worker.log"
            ).read_text()
            return not any(ids_left(url, kind, ids) for kind, ids in old.ids.items())

        wait_until(gone, timeout=60, what="the worker process's purge")
        assert purge_lines(server.log_lines()) == []
        by_worker = purge_lines(log_lines(tmp_path / "worker.log"))
        assert {line["kind"] for line in by_worker} == {"chat_completions", "responses"}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        stop_server(server)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_purge_command_prints_what_it_deleted_by_kind(
    backend: str, tmp_path: Path, postgres_databases: PostgresDatabases
):
    home = tmp_path / "home"
    env = {} if backend == "sqlite" else {"DATABASE_URL": postgres_databases.create()}
    url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{home / 'aiservice.db'}"
    config = home / "config.toml"
    home.mkdir()
    config.write_text("[retention]\nconversations_days = 60\nfiles_days = 10\n")
    first = run_cli("purge", home=home, env=env)  # migrates the new database too
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Purged 0 row(s)" in first.stdout
    old = seed_in_thread(url, "owner-cli", {kind: 2 * days for kind, days in DAYS.items()})
    result = run_cli("purge", home=home, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Usage records are kept by default; analyses follow responses (30 days).
    expected = {**dict.fromkeys(TABLES, 1), "usage_records": 0}
    assert (
        f"Purged {sum(expected.values())} row(s) past their retention or expiry:" in result.stdout
    )
    for kind, count in expected.items():
        assert f"  {kind}: {count}\n" in result.stdout, result.stdout
    assert ids_left(url, "usage_records", old.ids["usage_records"]) == set(old.ids["usage_records"])
    assert not any(ids_left(url, kind, old.ids[kind]) for kind in TABLES if kind != "usage_records")


def test_purge_command_leaves_the_round_to_the_process_already_purging(
    tmp_path: Path, postgres_databases: PostgresDatabases
):
    url = postgres_databases.create()
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    env = {"DATABASE_URL": url}
    server_home = tmp_path / "home"
    server_home.mkdir()

    async def purge_while_locked() -> subprocess.CompletedProcess:
        connection = await asyncpg.connect(plain, timeout=10)
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", PURGE_LOCK_KEY)
            return run_cli("purge", home=server_home, env=env)
        finally:
            await connection.close()

    result = run_in_thread(purge_while_locked)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Another process is purging this database now" in result.stdout


def test_the_retention_section_falls_back_on_the_top_level_settings():
    legacy = Settings(retention_days=7, purge_interval_s=60)
    assert retention_days(legacy) == {
        "chat_completions": 7,
        "responses": 7,
        "conversations": 0,
        "document_analyses": 7,  # as responses
        "batches": 30,
        "files": 0,
        "usage_records": 0,
    }
    assert purge_interval_s(legacy) == 60
    section = {"chat_completions_days": 1, "responses_days": 2, "purge_interval_s": 5}
    both = Settings(retention_days=7, purge_interval_s=60, retention=section)
    days = retention_days(both)
    assert (days["chat_completions"], days["responses"], days["document_analyses"]) == (1, 2, 2)
    assert purge_interval_s(both) == 5


def test_a_retention_field_can_be_set_alone_in_the_environment(monkeypatch):
    monkeypatch.setenv("AISERVICE_RETENTION__USAGE_DAYS", "400")
    monkeypatch.setenv("AISERVICE_RETENTION", '{"files_days": 9}')
    days = retention_days(Settings())
    assert (days["usage_records"], days["files"], days["chat_completions"]) == (400, 9, 30)
