"""`truncation` on the Responses API: an input longer than the model's context window is a 400
by default (`disabled`), and with `auto` the oldest messages are dropped until it fits.

The server here runs the bundled model with a 1024-token window, so that an overflowing input
is short enough to evaluate in a few seconds on this 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import (
    MASTER_KEY,
    assert_error_envelope,
    assert_matches_schema,
    start_server,
    stop_server,
)

URL = "/v1/responses"
MODEL = "smollm2-135m-instruct"
WINDOW = 1024
# About 75 tokens a turn: 20 turns overflow the window by half.
FILLER = "The lighthouse keeper wrote down the weather every hour of every day. " * 4


@pytest.fixture(scope="module")
def small_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home: Path = tmp_path_factory.mktemp("aiservice-small-window")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{MODEL}"\ncontext_window = {WINDOW}\n', encoding="utf-8"
    )
    server = start_server(home)
    try:
        with httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=120,
        ) as http:
            yield http
    finally:
        stop_server(server)


def long_input(turns: int = 20) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for turn in range(turns):
        items.append({"role": "user", "content": f"Note {turn}: {FILLER}"})
        items.append({"role": "assistant", "content": f"Noted {turn}."})
    items.append({"role": "user", "content": "Say OK."})
    return items


def count(http: httpx.Client, items: list[dict[str, Any]]) -> int:
    response = http.post(f"{URL}/input_tokens", json={"model": MODEL, "input": items})
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def test_an_input_beyond_the_context_window_is_refused_by_default(small_window):
    assert count(small_window, long_input()) > WINDOW
    body = {"model": MODEL, "input": long_input(), "max_output_tokens": 16}
    error = assert_error_envelope(small_window.post(URL, json=body), 400, param="input")
    assert "context length" in error["message"]
    explicit = small_window.post(URL, json={**body, "truncation": "disabled"})
    assert_error_envelope(explicit, 400, param="input")


def test_auto_truncation_drops_the_oldest_messages_until_the_input_fits(small_window):
    items = long_input()
    body = {
        "model": MODEL,
        "input": items,
        "max_output_tokens": 16,
        "temperature": 0,
        "truncation": "auto",
        "store": False,
    }
    response = small_window.post(URL, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_matches_schema(answer, "Response")
    assert answer["truncation"] == "auto"
    assert answer["status"] in {"completed", "incomplete"}, answer
    used = answer["usage"]["input_tokens"]
    # What was kept is the longest tail of the input that fits beside max_output_tokens.
    tails = {kept: count(small_window, items[-kept:]) for kept in range(1, len(items) + 1)}
    longest_fitting = max(kept for kept, tokens in tails.items() if tokens + 16 <= WINDOW)
    assert used == tails[longest_fitting], (used, tails)
