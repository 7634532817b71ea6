"""A journal's lock is held from the moment its file can be seen: a process starting beside
(as the N processes of `serve --workers N` do) never takes a living journal for a dead one."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from typing import Any

import pytest

from aiservice.metering import journal as journal_module
from aiservice.metering.journal import UsageJournal, replay_dead_journals


def test_a_replay_between_creating_and_locking_the_lock_file_leaves_the_journal_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "journal"
    replayed: list[dict[str, Any]] = []

    async def write(records: list[dict[str, Any]]) -> None:
        replayed.extend(records)

    real_flock = fcntl.flock
    replays_in_the_gap = []

    def flock_after_a_neighbour_replayed(fd: int, operation: int) -> None:
        # Just before the new journal locks its file, another process starts and replays.
        if operation == fcntl.LOCK_EX and not replays_in_the_gap:
            replays_in_the_gap.append(asyncio.run(replay_dead_journals(directory, write)))
        real_flock(fd, operation)

    monkeypatch.setattr(journal_module.fcntl, "flock", flock_after_a_neighbour_replayed)
    alive = UsageJournal(directory)
    monkeypatch.setattr(journal_module.fcntl, "flock", real_flock)
    assert replays_in_the_gap == [0]
    lock = directory / f"usage-{alive.owner}.lock"
    assert lock.is_file()  # not unlinked by the neighbour
    assert sorted(p.name for p in directory.iterdir()) == [
        f"usage-{alive.owner}-0.jsonl",
        lock.name,
    ]

    alive.append({"record_id": "r1"})
    # A later start leaves the living journal alone: its records are its own to write.
    assert asyncio.run(replay_dead_journals(directory, write)) == 0
    assert replayed == []
    assert (directory / f"usage-{alive.owner}-0.jsonl").read_text().count("r1") == 1
    alive.close(everything_written=True)
    assert list(directory.iterdir()) == []
