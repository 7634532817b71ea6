"""What a soak run left in the database, read directly with asyncpg once every process has
stopped (tests/system/soak_harness.py), and the batches' output files read through nginx while
the servers still run. Also the wait for the background work to end after the load."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from support import bearer, run_in_thread

TERMINAL_RESPONSES = ("completed", "incomplete", "failed", "cancelled")
TERMINAL_BATCHES = ("completed", "failed", "expired", "cancelled")


@dataclass
class Snapshot:
    usage: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # background jobs
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_records: dict[str, list[str]] = field(default_factory=dict)  # batch id → request ids
    stored_replies: dict[str, str | None] = field(default_factory=dict)  # chatcmpl id → text
    conversation_items: dict[str, list[str]] = field(default_factory=dict)
    conversations_present: set[str] = field(default_factory=set)
    # Objects made by a request (stored completions, responses): how many, and the request
    # ids that made more than one (a request run twice, e.g. replayed by the proxy).
    objects: int = 0
    twice: dict[str, int] = field(default_factory=dict)

    @property
    def stored_completions(self) -> set[str]:
        return set(self.stored_replies)


USAGE = """SELECT request_id, key_id, owner, route, background, status_code, cost_usd,
    created_at, latency_ms, metadata->>'batch_id' AS batch_id FROM usage_records"""
RESPONSES = "SELECT id, status, attempts, response FROM responses WHERE background"
BATCHES = "SELECT seq, id, status FROM batches"
LINES = """SELECT batch_seq, line, custom_id, state, attempts,
    result->'response'->>'request_id' AS request_id FROM batch_lines ORDER BY batch_seq, line"""
STORED = "SELECT id, response->'choices'->0->'message'->>'content' AS text FROM chat_completions"
BY_REQUEST = """SELECT request_id, count(*) AS n FROM
    (SELECT request_id FROM responses UNION ALL SELECT request_id FROM chat_completions) made
    WHERE request_id IS NOT NULL GROUP BY request_id"""
ITEMS = """SELECT c.id, i.item_id FROM conversation_items i
    JOIN conversations c ON c.seq = i.conversation_seq ORDER BY i.seq"""


def read_database(dsn: str, file_custom_ids: dict[str, list[str]]) -> Snapshot:
    async def read() -> Snapshot:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await _snapshot(connection, file_custom_ids)
        finally:
            await connection.close()

    return run_in_thread(read)


async def _snapshot(connection: Any, file_custom_ids: dict[str, list[str]]) -> Snapshot:
    snapshot = Snapshot(usage=[dict(row) for row in await connection.fetch(USAGE)])
    for row in await connection.fetch(RESPONSES):
        body = json.loads(row["response"])
        snapshot.responses[row["id"]] = {
            "status": row["status"],
            "attempts": row["attempts"],
            "texts": output_texts(body),
        }
    by_seq: dict[int, str] = {}
    for row in await connection.fetch(BATCHES):
        by_seq[row["seq"]] = row["id"]
        snapshot.batches[row["id"]] = {
            "status": row["status"],
            "lines": [],
            "file_custom_ids": file_custom_ids.get(row["id"], []),
        }
    for row in await connection.fetch(LINES):
        snapshot.batches[by_seq[row["batch_seq"]]]["lines"].append(dict(row))
    records: dict[str, list[str]] = defaultdict(list)
    for record in snapshot.usage:
        if record["batch_id"]:
            records[record["batch_id"]].append(record["request_id"])
    snapshot.batch_records = dict(records)
    snapshot.stored_replies = {row["id"]: row["text"] for row in await connection.fetch(STORED)}
    items: dict[str, list[str]] = defaultdict(list)
    for row in await connection.fetch(ITEMS):
        items[row["id"]].append(row["item_id"])
    snapshot.conversation_items = dict(items)
    conversations = await connection.fetch("SELECT id FROM conversations")
    snapshot.conversations_present = {row["id"] for row in conversations}
    made = await connection.fetch(BY_REQUEST)
    snapshot.objects = sum(row["n"] for row in made)
    snapshot.twice = {row["request_id"]: row["n"] for row in made if row["n"] > 1}
    return snapshot


def output_texts(body: dict[str, Any]) -> list[str]:
    """The text of each output message of a Response body."""
    return [
        "".join(part.get("text", "") for part in item.get("content", []))
        for item in body.get("output") or []
        if item.get("type") == "message"
    ]


def wait_drained(
    dsn: str, responses: list[str], batches: list[str], timeout: float
) -> dict[str, int]:
    """Poll the database until every accepted background response and batch has ended (or
    `timeout` passes); returns how many of each are still open (0 and 0: drained)."""

    async def poll() -> dict[str, int]:
        connection = await asyncpg.connect(dsn, timeout=10)
        deadline = time.monotonic() + timeout
        try:
            while True:
                open_work = {
                    "responses": await connection.fetchval(
                        "SELECT count(*) FROM responses WHERE id = ANY($1::text[]) "
                        "AND NOT status = ANY($2::text[])",
                        responses,
                        list(TERMINAL_RESPONSES),
                    ),
                    "batches": await connection.fetchval(
                        "SELECT count(*) FROM batches WHERE id = ANY($1::text[]) "
                        "AND NOT status = ANY($2::text[])",
                        batches,
                        list(TERMINAL_BATCHES),
                    ),
                }
                if not any(open_work.values()) or time.monotonic() > deadline:
                    return open_work
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    return run_in_thread(poll)


def batch_file_custom_ids(url: str, key: str, batch_ids: list[str]) -> dict[str, list[str]]:
    """The custom ids in each batch's output and error files, as the Files API serves them."""
    found: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, headers=bearer(key), timeout=30) as http:
        for batch_id in batch_ids:
            batch = http.get(f"/v1/batches/{batch_id}")
            batch.raise_for_status()
            custom_ids: list[str] = []
            for file_id in (batch.json().get("output_file_id"), batch.json().get("error_file_id")):
                if file_id:
                    content = http.get(f"/v1/files/{file_id}/content")
                    content.raise_for_status()
                    custom_ids += [
                        json.loads(line)["custom_id"] for line in content.text.splitlines() if line
                    ]
            found[batch_id] = custom_ids
    return found


BUSY = """SELECT
    (SELECT count(*) FROM responses WHERE status = 'in_progress' AND left(worker_id, $2) = $1),
    (SELECT count(*) FROM batch_lines WHERE state = 'running' AND left(worker_id, $2) = $1)"""


def wait_busy(dsn: str, worker_prefix: str, timeout: float) -> tuple[int, int]:
    """Poll until the worker whose ids start with `worker_prefix` runs a background response
    and a batch line (or `timeout` passes); returns how many of each it ran at the last look."""

    async def poll() -> tuple[int, int]:
        connection = await asyncpg.connect(dsn, timeout=10)
        deadline = time.monotonic() + timeout
        try:
            while True:
                jobs, lines = await connection.fetchrow(BUSY, worker_prefix, len(worker_prefix))
                if (jobs and lines) or time.monotonic() > deadline:
                    return jobs, lines
                await asyncio.sleep(0.01)
        finally:
            await connection.close()

    return run_in_thread(poll)
