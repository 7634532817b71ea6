"""The embedded `AIService` meters its chat completions like the server does: one usage record
per call, priced, route `embedded:/v1/chat/completions`, owner "admin" (the facade acts as the
master key), written to the home's database by the time `close()` returns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiservice import AIService
from aiservice.client import EMBEDDED_CHAT_ROUTE
from usage_support import read_table

LOCAL = "smollm2-135m-instruct"
PRICE = (0.5, 1.5)  # USD per 1M input, output tokens
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: every reply is max_tokens
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh AISERVICE_HOME whose local model is priced; no other AISERVICE_* setting."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{LOCAL}"\n'
        f"price_input_per_1m = {PRICE[0]}\nprice_output_per_1m = {PRICE[1]}\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith("AISERVICE_") or name.upper() == "DATABASE_URL":
                patch.delenv(name)
        patch.setenv("AISERVICE_HOME", str(home))
        yield home


def cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE[0] + output_tokens * PRICE[1]) / 1e6


def test_each_embedded_call_leaves_one_record(home: Path) -> None:
    ai = AIService()
    try:
        plain = ai.create_chat_completion(
            messages=HELLO, max_tokens=4, logit_bias=NO_END, metadata={"feature": "auto_reply"}
        )
        assert plain["success"], plain
        streamed = ai.create_chat_completion(
            messages=HELLO, max_tokens=4, logit_bias=NO_END, stream=True
        )
        assert streamed["success"], streamed
        assert len(list(streamed["stream"])) >= 4
        refused = ai.create_chat_completion(messages=HELLO, model="no-such-model")
        assert refused["success"] is False
        left = ai.create_chat_completion(
            messages=HELLO, max_tokens=50, logit_bias=NO_END, stream=True
        )
        next(left["stream"])
        left["stream"].close()  # the caller stops reading: the generation is cancelled
    finally:
        ai.close()  # writes what the ledger holds

    rows = read_table(f"sqlite+aiosqlite:///{home / 'aiservice.db'}")
    assert [row["route"] for row in rows] == [EMBEDDED_CHAT_ROUTE] * 4
    assert {(row["owner"], row["key_id"]) for row in rows} == {("admin", None)}
    assert len({row["request_id"] for row in rows}) == 4

    by_status = sorted(rows, key=lambda row: row["status_code"])
    first, second, not_found, interrupted = by_status
    usage = plain["usage"]
    for row in (first, second):
        assert (row["model_requested"], row["model_served"], row["provider"]) == (
            "gpt-4o",
            LOCAL,
            "local",
        )
        assert (row["input_tokens"], row["output_tokens"]) == (usage["prompt_tokens"], 4)
        assert row["cost_usd"] == pytest.approx(cost(usage["prompt_tokens"], 4), rel=1e-12)
        assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    assert {tuple(sorted(row["metadata"].items())) for row in (first, second)} == {
        (("feature", "auto_reply"),),
        (),
    }
    assert (not_found["status_code"], not_found["error_code"]) == (404, "model_not_found")
    assert (not_found["model_served"], not_found["cost_usd"]) == (None, 0.0)
    assert (interrupted["status_code"], interrupted["model_served"]) == (499, LOCAL)
    assert interrupted["ttft_ms"] is not None  # its first tokens came
