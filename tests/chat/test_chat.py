"""`aiservice chat`: the REPL driven through stdin, against a real server and in-process; its
conversations resumed by new processes and after restarts; the retry policy.

Replies are compared with what the server stored, never with fixed text: the model decides what
it says, the chat must only show and keep it faithfully.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from tenacity import RetryCallState, Retrying, wait_none

from aiservice.chat.retry import RETRY_ATTEMPTS, RETRY_WAIT, call_with_retries, is_transient
from aiservice.chat.session import ChatOptions, ChatSession
from support import MASTER_KEY, RunningServer, start_server, stop_server

CONVERSATION_LINE = re.compile(r"^conversation: (conv_\w+)", re.MULTILINE)
# Short, greedy replies: the tests are about the chat, not the model.
SAMPLING = ("--max-output-tokens", "24", "--temperature", "0")
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


def run_chat(
    *args: str, home: Path, input: str, server: RunningServer | None = None
) -> subprocess.CompletedProcess:
    """`aiservice chat ARGS` fed `input` on stdin (no terminal), with a clean AISERVICE_*
    environment and `home` as its AISERVICE_HOME; with `server`, against it as its admin."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("AISERVICE_") and name.upper() != "DATABASE_URL"
    }
    remote = ("--server", server.base_url, "--api-key", MASTER_KEY) if server else ()
    return subprocess.run(
        [sys.executable, "-m", "aiservice", "chat", *remote, *SAMPLING, *args],
        env={**clean, "AISERVICE_HOME": str(home), "AISERVICE_MASTER_KEY": MASTER_KEY},
        capture_output=True,
        text=True,
        input=input,
        start_new_session=True,
        timeout=300,
    )


def conversation_ids(result: subprocess.CompletedProcess) -> list[str]:
    return CONVERSATION_LINE.findall(result.stdout)


def sdk(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


def stored_messages(client: OpenAI, conversation_id: str) -> list[tuple[str, str]]:
    """(role, text) of every item of the conversation, oldest first."""
    return [
        (item.role, "".join(part.text for part in item.content))
        for item in client.conversations.items.list(conversation_id, order="asc")
    ]


def assert_shows_history(output: str, messages: list[tuple[str, str]]) -> None:
    """`/history` printed every message as `role: text`, in order."""
    position = output.index("/history")
    for role, text in messages:
        position = output.index(f"\n{role}: {text}\n", position) + 1


def assert_two_turns(result: subprocess.CompletedProcess, stored: list[tuple[str, str]]) -> None:
    """The conversation holds both questions and both replies, as they were streamed."""
    assert [role for role, _ in stored] == ["user", "assistant", "user", "assistant"], stored
    assert [text for role, text in stored if role == "user"] == [FIRST, SECOND]
    for role, text in stored:
        if role == "assistant":
            assert text.strip(), stored
            assert f"assistant> {text}\n" in result.stdout, result.stdout
    assert_shows_history(result.stdout, stored)


FIRST = "Hello, what is your name?"
SECOND = "Name a colour."
TWO_TURNS = f"{FIRST}\n{SECOND}\n/history\n/exit\n"


def test_remote_chat_is_kept_by_the_server_and_resumed_after_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "server-home"
    client_home = tmp_path / "client-home"
    server = start_server(home, env=NO_DATABASE_URL)
    try:
        first = run_chat(home=client_home, input=TWO_TURNS, server=server)
        assert first.returncode == 0, first.stdout + first.stderr
        [conversation_id] = conversation_ids(first)
        stored = stored_messages(sdk(server), conversation_id)
        assert_two_turns(first, stored)
    finally:
        stop_server(server)

    server = start_server(home, env=NO_DATABASE_URL)
    try:
        again = run_chat(
            "--conversation", conversation_id, home=client_home, input="/history\n/exit\n",
            server=server,
        )  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert conversation_ids(again) == [conversation_id]
        assert_shows_history(again.stdout, stored)
        assert stored_messages(sdk(server), conversation_id) == stored
    finally:
        stop_server(server)


def test_each_exchange_is_logged_as_one_json_line_without_the_text(
    server: RunningServer, tmp_path: Path
) -> None:
    """The default log is $AISERVICE_HOME/chat.log: ids, model, tokens and latency per
    exchange, never what was said."""
    result = run_chat(home=tmp_path, input=f"{FIRST}\n/summary\n/exit\n", server=server)
    assert result.returncode == 0, result.stdout + result.stderr
    [conversation_id] = conversation_ids(result)
    lines = [json.loads(line) for line in (tmp_path / "chat.log").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["turn", "summary"]
    for line in lines:
        assert line["conversation"] == conversation_id
        assert line["response"].startswith("resp_")
        assert line["model"] == "gpt-4o-mini"
        assert line["status"] in ("completed", "incomplete")
        assert line["input_tokens"] > 0 and 0 < line["output_tokens"] <= 24
        assert line["latency_ms"] >= line["first_token_ms"] >= 0
        assert line["attempts"] == 1
    log_text = (tmp_path / "chat.log").read_text()
    assert FIRST not in log_text and "Summarise" not in log_text


def test_embedded_chat_is_resumed_by_a_new_process_and_seen_by_the_server(
    tmp_path: Path,
) -> None:
    """Without --server the chat runs aiservice in-process on its home, as the admin owner: a
    second process resumes the conversation, and a server on that home shows it to its master
    key."""
    home = tmp_path / "home"
    first = run_chat(home=home, input=TWO_TURNS)
    assert first.returncode == 0, first.stdout + first.stderr
    [conversation_id] = conversation_ids(first)

    again = run_chat("--conversation", conversation_id, home=home, input="/history\n")
    assert again.returncode == 0, again.stdout + again.stderr
    assert conversation_ids(again) == [conversation_id]

    server = start_server(home, env=NO_DATABASE_URL)
    try:
        stored = stored_messages(sdk(server), conversation_id)
    finally:
        stop_server(server)
    assert_two_turns(first, stored)
    assert_shows_history(again.stdout, stored)
    # The in-process master key was this process's own: nothing was written to the home for it.
    assert not (home / "master_key.sha256").exists()
    # The in-process server logs to a file of its own, never to the terminal.
    assert '"logger": "aiservice.access"' in (home / "chat-server.log").read_text()
    for output in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert '"level"' not in output and "Uvicorn" not in output
    exchanges = (home / "chat.log").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in exchanges] == ["turn", "turn"]


def test_summary_adds_nothing_and_new_starts_another_conversation(
    server: RunningServer, client: OpenAI, tmp_path: Path
) -> None:
    result = run_chat(home=tmp_path, input=f"{FIRST}\n/summary\n/new\n/history\n", server=server)
    assert result.returncode == 0, result.stdout + result.stderr  # end of input quits cleanly
    first_id, second_id = conversation_ids(result)
    assert first_id != second_id
    assert "\nsummary> " in result.stdout
    assert [role for role, _ in stored_messages(client, first_id)] == ["user", "assistant"]
    assert stored_messages(client, second_id) == []
    assert "(no messages yet)" in result.stdout


def test_an_unknown_conversation_ends_the_chat_with_exit_code_1(
    server: RunningServer, tmp_path: Path
) -> None:
    result = run_chat("--conversation", "conv_nope", home=tmp_path, input="", server=server)
    assert result.returncode == 1
    assert "error: no such conversation: conv_nope" in result.stderr.splitlines()
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unknown_command_prints_the_help_and_the_chat_goes_on(
    server: RunningServer, tmp_path: Path
) -> None:
    result = run_chat(home=tmp_path, input="/frobnicate\n/history\n/exit\n", server=server)
    assert result.returncode == 0, result.stderr
    assert "unknown command: /frobnicate" in result.stdout
    for command in ("/summary", "/history", "/new", "/exit"):
        assert command in result.stdout
    assert "(no messages yet)" in result.stdout


def test_a_refused_request_is_one_error_line_not_retried_and_the_chat_goes_on(
    server: RunningServer, client: OpenAI, tmp_path: Path
) -> None:
    log_file = tmp_path / "exchanges.jsonl"
    result = run_chat(
        "--model", "no-such-model", "--log-file", str(log_file), home=tmp_path,
        input=f"{FIRST}\n{SECOND}\n/exit\n", server=server,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "no-such-model" in errors[0], result.stderr
    assert "retrying" not in result.stderr
    [conversation_id] = conversation_ids(result)
    assert stored_messages(client, conversation_id) == []
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(line["status"], line["attempts"]) for line in lines] == [("error", 1)] * 2
    assert not (tmp_path / "chat.log").exists()


def test_remote_mode_needs_an_api_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiservice", "chat", "--server", "http://127.0.0.1:9"],
        env={
            **{k: v for k, v in os.environ.items() if not k.endswith("API_KEY")},
            "AISERVICE_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        input="",
        timeout=60,
    )
    assert result.returncode == 2
    assert "--api-key" in result.stderr


# --- the retry policy ----------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/responses")


def status_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST)
    return cls(f"Error code: {status}", response=response, body={"message": f"status {status}"})


def failing(times: int, error: Exception) -> tuple[list[int], Any]:
    """A call that raises `error` `times` times, then returns "ok"; and its call counter."""
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return calls, call


@pytest.mark.parametrize(
    "error",
    [
        openai.APIConnectionError(request=REQUEST),
        openai.APITimeoutError(request=REQUEST),
        status_error(openai.RateLimitError, 429),
        status_error(openai.InternalServerError, 500),
        status_error(openai.InternalServerError, 503),
    ],
    ids=lambda error: type(error).__name__ + str(getattr(error, "status_code", "")),
)
def test_transient_errors_are_retried_until_the_call_succeeds(error: Exception) -> None:
    assert is_transient(error)
    calls, call = failing(2, error)
    told: list[float] = []
    result = call_with_retries(call, wait=wait_none(), on_retry=lambda _, s: told.append(s))
    assert result == "ok" and len(calls) == 3
    assert told == [0.0, 0.0]


@pytest.mark.parametrize(
    "error",
    [
        status_error(openai.BadRequestError, 400),
        status_error(openai.AuthenticationError, 401),
        status_error(openai.NotFoundError, 404),
    ],
    ids=lambda error: str(error.status_code),
)
def test_client_errors_are_not_retried(error: Exception) -> None:
    assert not is_transient(error)
    calls, call = failing(1, error)
    with pytest.raises(type(error)):
        call_with_retries(call, wait=wait_none())
    assert len(calls) == 1


def test_retries_stop_after_the_last_attempt_with_the_last_error() -> None:
    error = openai.APIConnectionError(request=REQUEST)
    calls, call = failing(10, error)
    with pytest.raises(openai.APIConnectionError) as raised:
        call_with_retries(call, attempts=4, wait=wait_none())
    assert raised.value is error and len(calls) == 4


def test_the_default_wait_grows_exponentially_with_jitter() -> None:
    """About 0.5 s, 1 s, then 2 s between the attempts, each plus up to 0.5 s of jitter."""
    for attempt, base in zip(range(1, RETRY_ATTEMPTS), (0.5, 1.0, 2.0), strict=True):
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        waits = {RETRY_WAIT(state) for _ in range(20)}
        assert all(base <= wait <= base + 0.5 for wait in waits), (attempt, waits)
        assert len(waits) > 1  # jitter


# --- a stream is retried only before its first text ----------------------------------------


def delta(text: str) -> SimpleNamespace:
    return SimpleNamespace(type="response.output_text.delta", delta=text)


class FakeStream:
    """What `responses.create(stream=True)` returns: events, then maybe an error."""

    def __init__(self, events: list[SimpleNamespace], error: Exception | None = None):
        self.events, self.error = events, error

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __iter__(self) -> Iterator[SimpleNamespace]:
        yield from self.events
        if self.error is not None:
            raise self.error


def fake_client(outcomes: list[FakeStream | Exception]) -> SimpleNamespace:
    """A client whose responses.create gives these outcomes in turn (an exception is raised)."""

    def create(**request: Any) -> FakeStream:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return SimpleNamespace(responses=SimpleNamespace(create=create))


def session(client: SimpleNamespace, tmp_path: Path) -> ChatSession:
    options = ChatOptions(log_path=tmp_path / "chat.log")
    chat = ChatSession(client, options, retry_wait=wait_none())  # type: ignore[arg-type]
    chat.conversation_id = "conv_test"
    return chat


def logged(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "chat.log").read_text().splitlines()]


def test_a_stream_that_fails_before_any_text_is_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = openai.APIConnectionError(request=REQUEST)
    client = fake_client([drop, FakeStream([], error=drop), FakeStream([delta("Hi"), delta("!")])])
    session(client, tmp_path).send("hello")
    out, err = capsys.readouterr()
    assert out == "assistant> Hi!\n"
    assert err.count("retrying") == 2 and "error:" not in err
    assert logged(tmp_path)[0]["attempts"] == 3


def test_a_stream_that_fails_after_text_is_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = openai.APIConnectionError(request=REQUEST)
    client = fake_client([FakeStream([delta("Hal")], error=drop), FakeStream([delta("twice")])])
    session(client, tmp_path).send("hello")
    out, err = capsys.readouterr()
    assert out == "assistant> Hal\n"
    assert "retrying" not in err
    assert err.strip() == "error: could not reach the server (127.0.0.1:9)"
    [line] = logged(tmp_path)
    assert (line["status"], line["attempts"]) == ("error", 1)
