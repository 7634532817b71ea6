"""Many rows of one data subject written straight into a database (stored chat completions with
their metadata rows, usage records), for the erasure tests and benchmarks/privacy_subject.py:
more rows than a server makes in a test's time."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import insert

from aiservice.store.database import Database
from aiservice.store.tables import CompletionMetadata, StoredCompletion
from aiservice.store.usage_daily import insert_records

CHUNK = 1000


async def seed_subject(
    database: Database, owner: str, key: str, value: str, completions: int, usage: int
) -> None:
    """`completions` stored chat completions and `usage` usage records of `owner`, each with
    metadata {key: value}."""
    async with database.sessions.begin() as session:
        seqs: list[int] = []
        for start in range(0, completions, CHUNK):
            count = min(CHUNK, completions - start)
            rows = [_completion(owner, {key: value}) for _ in range(count)]
            returning = insert(StoredCompletion).returning(StoredCompletion.seq)
            seqs += list(await session.scalars(returning, rows))
        pairs = [
            {"completion_seq": seq, "key": key, "value": value, "owner": owner} for seq in seqs
        ]
        for start in range(0, len(pairs), CHUNK):
            await session.execute(insert(CompletionMetadata), pairs[start : start + CHUNK])
        for start in range(0, usage, CHUNK):
            count = min(CHUNK, usage - start)
            rows = [_usage(owner, {key: value}) for _ in range(count)]
            await insert_records(session, rows)  # and the daily rollup with them


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
        "metadata": metadata,  # insert_records takes column names
        "end_user": None,
    }
