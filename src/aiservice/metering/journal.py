"""The usage ledger's journal: every record a process takes is appended to a local file before
the request ends, so that one killed before its next batch write (kill -9, OOM) loses none.

Each process writes its own segments, `usage-<owner>-<n>.jsonl`, in one directory, and holds
an exclusive lock (flock) on `usage-<owner>.lock` while it lives; the kernel drops the lock
when the process dies, however it dies. When a batch is taken for writing, the current segment
is sealed and a new one begun; once the batch is in the database, its sealed segments are
deleted. A process starting in the same directory replays the segments of every owner whose
lock it can take (a dead one) and deletes them: a record already written is skipped by its
record_id, so a record is never counted twice nor lost.

An append is one write() of one line to the page cache (a few microseconds, no fsync): it
survives the death of the process, not of the machine.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Record = dict[str, Any]
_PREFIX = "usage-"


class UsageJournal:
    def __init__(self, directory: Path):
        self.directory = directory
        self.owner = secrets.token_hex(6)
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _new_lock(directory / f"{_PREFIX}{self.owner}.lock")
        self._number = 0
        self._sealed: list[Path] = []  # segments whose records are not yet in the database
        self._fd = self._open_segment()

    def _segment(self, number: int) -> Path:
        return self.directory / f"{_PREFIX}{self.owner}-{number}.jsonl"

    def _open_segment(self) -> int:
        return os.open(self._segment(self._number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, record: Record) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        os.write(self._fd, line.encode())

    def seal(self) -> list[Path]:
        """Begin a new segment; returns every sealed segment not yet discarded (what the batch
        about to be written holds)."""
        os.close(self._fd)
        self._sealed.append(self._segment(self._number))
        self._number += 1
        self._fd = self._open_segment()
        return list(self._sealed)

    def discard(self, segments: list[Path]) -> None:
        """`segments`' records are in the database: drop them."""
        for segment in segments:
            segment.unlink(missing_ok=True)
        self._sealed = [s for s in self._sealed if s not in segments]

    def close(self, *, everything_written: bool) -> None:
        """Close the files; with everything written, delete this process's journal."""
        os.close(self._fd)
        if everything_written:
            self.discard([*self._sealed, self._segment(self._number)])
            (self.directory / f"{_PREFIX}{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)


async def replay_dead_journals(
    directory: Path, write: Callable[[list[Record]], Awaitable[None]]
) -> int:
    """Write the records of every dead process's journal in `directory`, then delete it;
    returns how many records were replayed (some may have been in the database already)."""
    if not directory.is_dir():
        return 0
    replayed = 0
    for owner in sorted(_owners(directory)):
        lock_path = directory / f"{_PREFIX}{owner}.lock"
        try:
            lock_fd = _locked(lock_path, blocking=False)
        except BlockingIOError:
            continue  # alive
        try:
            segments = sorted(directory.glob(f"{_PREFIX}{owner}-*.jsonl"))
            records = list(_records(segments))
            if records:
                await write(records)
                replayed += len(records)
                log.warning(
                    "usage records replayed from a stopped process's journal",
                    extra={"records": len(records), "journal_owner": owner},
                )
            for segment in segments:
                segment.unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
        finally:
            os.close(lock_fd)
    return replayed


def _owners(directory: Path) -> set[str]:
    owners = set()
    for path in directory.glob(f"{_PREFIX}*"):
        name = path.name.removeprefix(_PREFIX)
        owners.add(name.removesuffix(".lock") if name.endswith(".lock") else name.split("-")[0])
    return owners


def _records(segments: list[Path]) -> Iterator[Record]:
    for segment in segments:
        with segment.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    log.error("unreadable usage journal line skipped", extra={"file": segment.name})


def _new_lock(path: Path) -> int:
    """A lock file that is locked from the moment it can be seen: made and locked under a
    name replays do not look at, then renamed. Created in place, it could be seen before its
    flock by a process starting beside (the N processes of `serve --workers N` start at
    once), which took it for a dead process's, unlinked it, and left this one's journal
    without a lock: replayed, and deleted, under it later."""
    hidden = path.with_name(f".{path.name}.new")
    fd = _locked(hidden, blocking=True)
    try:
        os.rename(hidden, path)
    except BaseException:
        os.close(fd)
        hidden.unlink(missing_ok=True)
        raise
    return fd


def _locked(path: Path, *, blocking: bool) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd
