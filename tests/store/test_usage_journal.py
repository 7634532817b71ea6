"""The usage journal with the ledger on a real database (both backends): what a dead process
journaled is written once at the next start, however often it is replayed; a written batch
leaves nothing behind; a failed one keeps its journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiservice.metering.journal import UsageJournal, replay_dead_journals
from aiservice.metering.ledger import UsageLedger
from aiservice.metering.meter import Meter
from aiservice.metering.pricing import PriceList
from aiservice.settings import Settings
from aiservice.store.database import Database
from aiservice.store.usage import UsageQuery, UsageStore


def meter(request_id: str) -> Meter:
    taken = Meter("/v1/chat/completions", request_id)
    taken.owner, taken.model_served, taken.input_tokens, taken.output_tokens = "u1", "m", 3, 5
    return taken


async def request_ids(store: UsageStore) -> list[str]:
    return sorted(r.request_id for r in await store.records(UsageQuery(), limit=10_000))


def journal_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def journal_of_a_dead_process(directory: Path, ids: list[str]) -> None:
    """Another process journals records and is killed before writing them (SIGKILL)."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from aiservice.metering.journal import UsageJournal\n"
        "journal = UsageJournal(Path(sys.argv[1]))\n"
        "for i, rid in enumerate(sys.argv[2:]):\n"
        "    journal.append({'record_id': f'r{rid}', 'request_id': rid, 'created_at': 1.0,\n"
        "        'day': '1970-01-01', 'route': '/v1/chat/completions', 'background': False,\n"
        "        'input_tokens': 1, 'output_tokens': 1, 'cost_usd': 0.0, 'latency_ms': 1.0,\n"
        "        'status_code': 200, 'upstream_attempts': 0, 'metadata': {}})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    finished = subprocess.run([sys.executable, "-c", script, str(directory), *ids], check=False)
    assert finished.returncode == -9


async def test_a_dead_process_journal_is_written_once_however_often_replayed(
    store_url: str, tmp_path: Path
):
    directory = tmp_path / "journal"
    journal_of_a_dead_process(directory, ["a", "b", "c"])
    assert journal_files(directory)  # its lock and its segment are left behind
    database = Database(store_url)
    store = UsageStore(database)
    try:
        # A replay that wrote the records but died before deleting them is replayed again.
        copy = {p.name: p.read_bytes() for p in directory.iterdir()}
        assert await replay_dead_journals(directory, store.insert_many) == 3
        for name, content in copy.items():
            (directory / name).write_bytes(content)
        assert await replay_dead_journals(directory, store.insert_many) == 3
        assert await request_ids(store) == ["a", "b", "c"]
        assert journal_files(directory) == []
    finally:
        await database.close()


async def test_a_living_process_journal_is_left_alone(store_url: str, tmp_path: Path):
    directory = tmp_path / "journal"
    alive = UsageJournal(directory)
    alive.append({"record_id": "x"})
    database = Database(store_url)
    try:
        assert await replay_dead_journals(directory, UsageStore(database).insert_many) == 0
        assert len(journal_files(directory)) == 2
    finally:
        alive.close(everything_written=False)
        await database.close()


async def test_the_ledger_journals_each_record_and_drops_it_once_written(
    store_url: str, tmp_path: Path
):
    directory = tmp_path / "journal"
    database = Database(store_url)
    store = UsageStore(database)
    ledger = UsageLedger(store, PriceList(Settings()), flush_s=60)
    try:
        await ledger.start(directory)
        for rid in ("one", "two"):
            ledger.record(meter(rid), 200)
        segments = [p for p in directory.iterdir() if p.suffix == ".jsonl"]
        assert sum(len(p.read_text().splitlines()) for p in segments) == 2
        assert await ledger.flush() == 2
        assert sum(len(p.read_text().splitlines()) for p in directory.glob("*.jsonl")) == 0
        ledger.record(meter("three"), 200)
    finally:
        await ledger.close()
        await database.close()
    assert journal_files(directory) == []  # a clean stop deletes its journal
    database = Database(store_url)
    try:
        assert await request_ids(UsageStore(database)) == ["one", "three", "two"]
    finally:
        await database.close()


async def test_a_failed_write_keeps_the_journal_for_the_next_start(store_url: str, tmp_path: Path):
    directory = tmp_path / "journal"
    database = Database(store_url)
    ledger = UsageLedger(UsageStore(database), PriceList(Settings()), flush_s=60)
    await ledger.start(directory)
    ledger.record(meter("kept"), 200)
    await database.close()
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'no.db'}")
    ledger._store = UsageStore(broken)  # the database is away at shutdown
    await ledger.close()
    await broken.close()
    assert any(p.suffix == ".jsonl" and p.read_text() for p in directory.iterdir())
    database = Database(store_url)
    store = UsageStore(database)
    try:
        assert await replay_dead_journals(directory, store.insert_many) == 1
        assert await request_ids(store) == ["kept"]
    finally:
        await database.close()
    assert os.listdir(directory) == []
