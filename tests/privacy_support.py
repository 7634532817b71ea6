"""Rows of one data subject written straight into a database, many at once, for the erasure
tests that need more than a server makes in a test's time (kill -9 mid-erasure)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import func, insert, select

from aiservice.store.database import Database
from aiservice.store.tables import CompletionMetadata, StoredCompletion, UsageRecord
from support import run_in_thread

CHUNK = 1000


def seed_subject(url: str, owner: str, key: str, value: str, completions: int, usage: int) -> None:
    """`completions` stored chat completions and `usage` usage records of `owner`, each with
    metadata {key: value}."""

    async def write() -> None:
        database = Database(url)
        try:
            async with database.sessions.begin() as session:
                seqs: list[int] = []
                for start in range(0, completions, CHUNK):
                    count = min(CHUNK, completions - start)
                    rows = [_completion(owner, {key: value}) for _ in range(count)]
                    returning = insert(StoredCompletion).returning(StoredCompletion.seq)
                    seqs += list(await session.scalars(returning, rows))
                pairs = [
                    {"completion_seq": seq, "key": key, "value": value, "owner": owner}
                    for seq in seqs
                ]
                for start in range(0, len(pairs), CHUNK):
                    await session.execute(insert(CompletionMetadata), pairs[start : start + CHUNK])
                for start in range(0, usage, CHUNK):
                    count = min(CHUNK, usage - start)
                    rows = [_usage(owner, {key: value}) for _ in range(count)]
                    await session.execute(insert(UsageRecord), rows)
        finally:
            await database.close()

    run_in_thread(write)


def count_where(url: str, table: Any, *conditions: Any) -> int:
    async def count() -> int:
        database = Database(url)
        try:
            async with database.sessions() as session:
                query = select(func.count()).select_from(table).where(*conditions)
                return int(await session.scalar(query) or 0)
        finally:
            await database.close()

    return run_in_thread(count)


def usage_totals(url: str) -> tuple[int, int, int, float]:
    async def totals() -> tuple[int, int, int, float]:
        database = Database(url)
        try:
            async with database.sessions() as session:
                row = (
                    await session.execute(
                        select(
                            func.count(),
                            func.sum(UsageRecord.input_tokens),
                            func.sum(UsageRecord.output_tokens),
                            func.sum(UsageRecord.cost_usd),
                        )
                    )
                ).one()
                return int(row[0]), int(row[1] or 0), int(row[2] or 0), round(row[3] or 0, 9)
        finally:
            await database.close()

    return run_in_thread(totals)


def _completion(owner: str, metadata: dict[str, str]) -> dict[str, Any]:
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    now = int(time.time())
    message = {"role": "user", "content": "a question with personal details"}
    return {
        "id": completion_id,
        "owner": owner,
        "model": "remote",
        "created_at": now,
        "expires_at": None,
        "request": {"model": "remote", "messages": [message], "metadata": metadata},
        "response": {
            "id": completion_id,
            "object": "chat.completion",
            "created": now,
            "model": "remote",
            "choices": [],
            "metadata": metadata,
        },
        "metadata_": metadata,
        "prompt_tokens": 7,
        "completion_tokens": 3,
    }


def _usage(owner: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "record_id": secrets.token_hex(16),
        "created_at": time.time(),
        "day": time.strftime("%Y-%m-%d", time.gmtime()),
        "request_id": "req_" + secrets.token_hex(8),
        "owner": owner,
        "key_id": None,
        "route": "/v1/chat/completions",
        "background": False,
        "model_requested": "remote",
        "model_served": "remote",
        "provider": "openai",
        "input_tokens": 7,
        "output_tokens": 3,
        "cached_tokens": None,
        "cost_usd": 0.000013,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "status_code": 200,
        "error_code": None,
        "upstream_attempts": 1,
        "priority": None,
        "wait_ms": None,
        "metadata_": metadata,
        "end_user": None,
    }
