"""SIGHUP re-reads the configuration and gives the upstream models their new keys, on a real
`aiservice serve` behind the project's fake upstream: the next request carries the new key, a
stream started before goes on to its end, and the process logs "configuration reloaded"
(without the key)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aiservice.testing import FakeUpstream, Fault
from support import MASTER_KEY, RunningServer, bearer, start_server, stop_server, wait_for_log_line

MODEL = "remote-chat"
CHAT = "/v1/chat/completions"
FIRST_KEY = "sk-upstream-first-0123456789"
SECOND_KEY = "sk-upstream-second-9876543210"
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream) -> Iterator[tuple[RunningServer, Path]]:
    key_file = tmp_path / "upstream.key"
    key_file.write_text(FIRST_KEY + "\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\napi_key_file = "{key_file}"\n'
    )
    server = start_server(home, env=NO_DATABASE_URL)
    yield server, key_file
    stop_server(server)


def _chat(**fields: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], **fields}


def _upstream_keys(upstream: FakeUpstream) -> list[str | None]:
    return [r.headers.get("authorization") for r in upstream.requests if r.path == CHAT]


def test_sighup_swaps_the_upstream_key_without_dropping_a_stream(
    gateway: tuple[RunningServer, Path], upstream: FakeUpstream
) -> None:
    server, key_file = gateway
    with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=60) as http:
        assert http.post(CHAT, json=_chat()).status_code == 200
        assert _upstream_keys(upstream) == [f"Bearer {FIRST_KEY}"]

        # A stream that pauses after its first two chunks: in flight across the reload.
        upstream.add_fault(Fault(path=CHAT, stream=True, stall_after_chunks=2, stall_s=3))
        with http.stream("POST", CHAT, json=_chat(stream=True)) as stream:
            lines = stream.iter_lines()
            first = list(_data_lines(lines, 2))
            assert len(first) == 2

            key_file.write_text(SECOND_KEY + "\n")
            log_mark = len(server.log_lines())
            server.process.send_signal(signal.SIGHUP)
            reloaded = wait_for_log_line(
                server,
                lambda line: line.get("message") == "configuration reloaded",
                after=log_mark,
                what="the reload's log line",
            )
            assert reloaded["upstream_keys_changed"] == [MODEL]

            answer = http.post(CHAT, json=_chat())
            assert answer.status_code == 200, answer.text
            assert _upstream_keys(upstream)[-1] == f"Bearer {SECOND_KEY}"

            rest = list(_data_lines(lines, None))
        events = [json.loads(data) for data in first + rest if data != "[DONE]"]
        assert rest[-1] == "[DONE]"
        assert any(e["choices"] and e["choices"][0]["finish_reason"] == "stop" for e in events)

    # The stream was sent with the key of its time; the process lives on; no key is logged.
    assert _upstream_keys(upstream)[1] == f"Bearer {FIRST_KEY}"
    assert server.process.poll() is None
    log_text = server.log_path.read_text()
    assert FIRST_KEY not in log_text and SECOND_KEY not in log_text


def _data_lines(lines: Iterator[str], count: int | None) -> Iterator[str]:
    """The next `count` SSE `data:` payloads (None: to the end of the stream)."""
    taken = 0
    for line in lines:
        if not line.startswith("data: "):
            continue
        yield line[len("data: ") :]
        taken += 1
        if count is not None and taken == count:
            return
