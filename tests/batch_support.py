"""Helpers of the Files and Batch API tests: input files, and waiting for a batch's state."""

from __future__ import annotations

import json
from typing import Any

from openai import OpenAI
from openai.types import Batch

from support import wait_until

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def chat_line(custom_id: str, model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines: list[Any]) -> bytes:
    """Lines as JSON Lines; a str is written as it is (a malformed line)."""
    return b"".join(
        (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines
    )


def submit(
    client: OpenAI,
    lines: list[Any],
    endpoint: str = "/v1/chat/completions",
    window: str = "24h",
    **extra: Any,
) -> Batch:
    source = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=source.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window=window,  # type: ignore[arg-type]
        **extra,
    )


def wait_for(client: OpenAI, batch_id: str, statuses: set[str] = TERMINAL, timeout=90) -> Batch:
    def reached() -> Batch | None:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in statuses else None

    return wait_until(reached, timeout=timeout, what=f"batch {batch_id} in {sorted(statuses)}")


def file_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]
