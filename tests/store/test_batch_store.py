"""Batches, their lines and files on SQLite and PostgreSQL: lines claimed exactly once by
concurrent workers, a line taken over after its lease ran out answered (and charged) once,
lines closed at a batch's end that a late worker can no longer write, and file content kept
in chunks that read back whole.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import func, select

from aiservice.store.batch_status import BatchStatus, LineState
from aiservice.store.batches import BatchStore, LineEnd, NewBatch, NewLine
from aiservice.store.database import Database
from aiservice.store.files import CHUNK_BYTES, FileStore, NewFile
from aiservice.store.retention import Cutoffs, RetentionStore
from aiservice.store.tables import StoredBatch, UsageRecord

OWNER = "owner-b"
WORKER_A, WORKER_B = "worker-a", "worker-b"


@dataclass
class Stores:
    database: Database
    batches: BatchStore
    files: FileStore


@asynccontextmanager
async def open_stores(url: str) -> AsyncIterator[Stores]:
    database = Database(url)
    try:
        yield Stores(database, BatchStore(database), FileStore(database))
    finally:
        await database.close()


async def running_batch(stores: Stores, lines: int) -> StoredBatch:
    """A batch past validation with `lines` pending lines."""
    now = int(time.time())
    row = await stores.batches.insert(
        NewBatch(
            id=f"batch_{secrets.token_hex(8)}",
            owner=OWNER,
            key_id=None,
            principal={"owner": OWNER, "is_admin": False},
            endpoint="/v1/chat/completions",
            input_file_id="file-x",
            completion_window="24h",
            created_at=now,
            expires_at=now + 86400,
            metadata=None,
            output_expires_after=None,
            request_id=None,
        )
    )
    claimed = await stores.batches.claim(WORKER_A, time.time(), 30)
    assert claimed is not None and claimed.id == row.id

    async def slices() -> AsyncIterator[list[NewLine]]:
        yield [NewLine(i + 1, f"c{i}", {"model": "m"}) for i in range(lines)]

    started = await stores.batches.start_lines(
        row, WORKER_A, slices(), total=lines, model="m", upstream=None, now=now
    )
    assert started
    fresh = await stores.batches.by_id(row.id)
    assert fresh is not None and fresh.status == BatchStatus.IN_PROGRESS
    return fresh


def usage_row(request_id: str) -> dict:
    return {
        "record_id": secrets.token_hex(16),
        "created_at": time.time(),
        "day": "2026-12-07",
        "request_id": request_id,
        "owner": OWNER,
        "key_id": None,
        "route": "/v1/batches",
        "background": True,
        "model_requested": "m",
        "model_served": "m",
        "provider": "local",
        "input_tokens": 1,
        "output_tokens": 1,
        "cached_tokens": None,
        "cost_usd": 0.0,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "status_code": 200,
        "error_code": None,
        "upstream_attempts": 0,
        "priority": None,
        "wait_ms": None,
        "metadata": {},
    }


def answered(custom_id: str) -> LineEnd:
    return LineEnd(
        LineState.SUCCEEDED, {"custom_id": custom_id}, 1, 1, 0, usage_row(f"req-{custom_id}")
    )


async def usage_count(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


async def test_concurrent_workers_claim_every_line_exactly_once(store_url):
    async with open_stores(store_url) as stores:
        batch = await running_batch(stores, 40)
        now = time.time()
        claims = await asyncio.gather(
            *(stores.batches.claim_lines(f"w{i}", now, 30, 7) for i in range(8))
        )
        lines = [line.line for claim in claims for line in claim]
        assert sorted(lines) == list(range(1, 41))  # each once: 8 x 7 asked, 40 there
        assert all(line.batch_id == batch.id for claim in claims for line in claim)
        assert await stores.batches.claim_lines("late", now, 30, 5) == []


async def test_a_line_taken_over_is_answered_and_charged_once(store_url):
    async with open_stores(store_url) as stores:
        batch = await running_batch(stores, 1)
        [first] = await stores.batches.claim_lines(WORKER_A, time.time(), 1, 1)
        later = time.time() + 5  # worker A's lease has run out by then
        [again] = await stores.batches.claim_lines(WORKER_B, later, 30, 1)
        assert again.line == first.line and again.attempts == 2
        assert await stores.batches.finish_line(batch.seq, 1, WORKER_B, answered("c0"))
        assert not await stores.batches.finish_line(batch.seq, 1, WORKER_A, answered("c0"))
        assert await usage_count(stores.database) == 1
        counts = await stores.batches.counts(batch.seq)
        assert (counts.total, counts.succeeded, counts.open) == (1, 1, 0)


async def test_a_released_line_waits_for_its_time(store_url):
    async with open_stores(store_url) as stores:
        batch = await running_batch(stores, 1)
        now = time.time()
        [line] = await stores.batches.claim_lines(WORKER_A, now, 30, 1)
        assert await stores.batches.release_line(batch.seq, line.line, WORKER_A, now + 60)
        assert await stores.batches.claim_lines(WORKER_B, now + 1, 30, 1) == []
        [back] = await stores.batches.claim_lines(WORKER_B, now + 61, 30, 1)
        assert back.attempts == 1  # a rate-limit hand-back is not an attempt


async def test_lines_closed_at_the_end_cannot_be_written_by_a_late_worker(store_url):
    async with open_stores(store_url) as stores:
        batch = await running_batch(stores, 3)
        [running] = await stores.batches.claim_lines(WORKER_A, time.time(), 30, 1)
        closed = await stores.batches.close_open_lines(
            batch.seq, lambda custom_id: {"custom_id": custom_id, "error": {"code": "x"}}
        )
        assert closed == 3
        assert not await stores.batches.finish_line(
            batch.seq, running.line, WORKER_A, answered(running.custom_id)
        )
        counts = await stores.batches.counts(batch.seq)
        assert (counts.failed, counts.open) == (3, 0)
        assert await usage_count(stores.database) == 0


async def test_a_cancel_while_validating_wins_over_the_lines(store_url):
    async with open_stores(store_url) as stores:
        now = int(time.time())
        row = await stores.batches.insert(
            NewBatch(
                f"batch_{secrets.token_hex(8)}",
                OWNER,
                None,
                {"owner": OWNER, "is_admin": False},
                "/v1/chat/completions",
                "file-x",
                "24h",
                now,
                now + 60,
                None,
                None,
                None,
            )
        )
        assert await stores.batches.claim(WORKER_A, time.time(), 30) is not None
        cancelled = await stores.batches.cancel(OWNER, row.id, now)
        assert cancelled is not None and cancelled.status == BatchStatus.CANCELLING

        async def slices() -> AsyncIterator[list[NewLine]]:
            yield [NewLine(1, "c", {})]

        started = await stores.batches.start_lines(
            row, WORKER_A, slices(), total=1, model=None, upstream=None, now=now
        )
        assert not started
        assert (await stores.batches.counts(row.seq)).total == 0


async def test_file_content_is_kept_in_chunks_and_read_back_whole(store_url):
    async with open_stores(store_url) as stores:
        content = secrets.token_bytes(CHUNK_BYTES * 2 + 123)
        now = int(time.time())
        new = NewFile(f"file-{secrets.token_hex(6)}", OWNER, "batch", "in.jsonl", now, None)
        file_seq = await stores.files.begin(new)
        assert await stores.files.get(OWNER, new.id, now) is None  # not complete yet
        for position, start in enumerate(range(0, len(content), CHUNK_BYTES)):
            await stores.files.append(file_seq, position, content[start : start + CHUNK_BYTES])
        row = await stores.files.finish(file_seq, len(content))
        assert row.bytes == len(content)
        read = b"".join([chunk async for chunk in stores.files.content(file_seq)])
        assert read == content
        assert await stores.files.get("someone-else", new.id, now) is None
        assert await stores.files.delete(OWNER, new.id)
        assert [chunk async for chunk in stores.files.content(file_seq)] == []


async def test_expired_and_abandoned_files_are_purged(store_url):
    async with open_stores(store_url) as stores:
        now = int(time.time())
        expiring = NewFile("file-expiring", OWNER, "batch", "a", now - 10, now - 1)
        abandoned = NewFile("file-abandoned", OWNER, "batch", "b", now - 7200, None)
        kept = NewFile("file-kept", OWNER, "user_data", "c", now, None)
        for new in (expiring, kept):
            seq = await stores.files.begin(new)
            await stores.files.append(seq, 0, b"x")
            await stores.files.finish(seq, 1)
        await stores.files.begin(abandoned)
        assert await RetentionStore(stores.database).purge("files", Cutoffs(now=now)) == 2
        page = await stores.files.list(OWNER, now, purpose=None, limit=10, order="desc", after=None)
        assert [row.id for row in page.rows] == ["file-kept"]
