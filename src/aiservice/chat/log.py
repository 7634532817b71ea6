"""The exchange log of `aiservice chat`: one JSON line per request to the model, with ids, usage
and timings but never the text of the messages (docs/chat.md says why)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_NAME = "chat.log"


@dataclass(slots=True)
class Exchange:
    """What one streamed request gave, for the log line."""

    kind: str  # "turn" or "summary"
    conversation: str
    model: str
    response_id: str | None = None
    response_model: str | None = None
    status: str | None = None  # the response's; "error" or "interrupted" when it never ended
    input_tokens: int | None = None
    output_tokens: int | None = None
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)
    first_delta: float | None = None
    error: str | None = None

    def log_line(self) -> dict[str, Any]:
        ended = time.monotonic()
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "kind": self.kind,
            "conversation": self.conversation,
            "response": self.response_id,
            "model": self.model,
            "response_model": self.response_model,
            "status": self.status,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_ms": round((ended - self.started) * 1000),
            "first_token_ms": (
                round((self.first_delta - self.started) * 1000) if self.first_delta else None
            ),
            "attempts": self.attempts,
        }
        if self.error is not None:
            line["error"] = self.error
        return line


class ExchangeLog:
    """One JSON line per exchange, appended to a file (never the terminal)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, exchange: Exchange) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(exchange.log_line()) + "\n")
