"""`aiservice chat`: a terminal chat whose conversation is kept by the server (seed 002,
exercise 1: the multi-session support chatbot).

Each turn is one streamed `responses.create(..., conversation=ID)`; the server appends the
user's input and the reply to the conversation when the response completes, so the chat keeps
no state of its own and `--conversation ID` resumes it from any process, after any restart.
Transient failures are retried with exponential backoff and jitter (tenacity); every exchange
is logged as one JSON line, without the text of the messages (see docs/chat.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai import OpenAI
from tenacity.wait import WaitBaseT

from aiservice.chat.log import LOG_NAME, Exchange, ExchangeLog
from aiservice.chat.retry import RETRY_WAIT, call_with_retries
from aiservice.settings import Settings, default_home

T = TypeVar("T")

DEFAULT_MODEL = "gpt-4o-mini"
SUMMARY_REQUEST = "Summarise the conversation so far in a few sentences."
HELP = """commands:
  /summary   summarise the conversation so far (adds nothing to it)
  /history   show every message of the conversation
  /new       start a new conversation
  /exit      quit (so do Ctrl-D and Ctrl-C at the prompt)"""


class ChatError(Exception):
    """Ends the chat with a one-line message and exit code `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What every turn asks for, and where exchanges are logged."""

    model: str = DEFAULT_MODEL
    max_output_tokens: int | None = 256
    temperature: float | None = None
    log_path: Path = field(default_factory=lambda: default_home() / LOG_NAME)


def error_message(exc: BaseException) -> str:
    """One line for the user: the server's own message when it sent one."""
    if isinstance(exc, openai.APITimeoutError):
        return "the server did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return f"could not reach the server ({exc.request.url.host}:{exc.request.url.port})"
    if isinstance(exc, openai.APIError):
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"]
        return exc.message
    return f"{type(exc).__name__}: {exc}"


# --- the REPL ------------------------------------------------------------------------------


class ChatSession:
    """The REPL over one conversation at a time; `/new` switches to a fresh one."""

    def __init__(
        self,
        client: OpenAI,
        options: ChatOptions,
        *,
        retry_wait: WaitBaseT = RETRY_WAIT,
    ):
        self.client = client
        self.options = options
        self.log = ExchangeLog(options.log_path)
        self.conversation_id = ""
        self._retry_wait = retry_wait
        self._commands: dict[str, Callable[[], bool]] = {
            "/summary": self.summarise,
            "/history": self.show_history,
            "/new": self.start_new,
            "/exit": lambda: False,
            "/quit": lambda: False,
            "/help": self.show_help,
        }

    def open(self, conversation_id: str | None) -> None:
        """Resume `conversation_id`, or start a new conversation; print its id."""
        if conversation_id is None:
            self.start_new()
            return
        try:
            self._call(lambda: self.client.conversations.retrieve(conversation_id))
        except openai.NotFoundError:
            raise ChatError(f"no such conversation: {conversation_id}") from None
        except openai.APIError as exc:
            raise ChatError(error_message(exc)) from None
        self.conversation_id = conversation_id
        _say(f"conversation: {conversation_id} (resumed)")

    def run(self, lines: Iterator[str]) -> None:
        """Read lines until /exit or their end; a failed request is reported, not fatal."""
        for line in lines:
            text = line.strip()
            if not text:
                continue
            try:
                if not self.handle(text):
                    return
            except openai.APIError as exc:
                _error(error_message(exc))

    def handle(self, text: str) -> bool:
        """Act on one line; False means quit."""
        if text.startswith("/"):
            command = self._commands.get(text.split()[0].lower())
            if command is None:
                _say(f"unknown command: {text.split()[0]}\n{HELP}")
                return True
            return command()
        self.send(text)
        return True

    def send(self, text: str) -> None:
        """One turn: stream the reply; the server appends both to the conversation."""
        self._stream(
            "turn",
            "assistant> ",
            {"input": text, "conversation": self.conversation_id},
        )

    def summarise(self) -> bool:
        messages = [_as_input(item) for item in self._items() if item.type == "message"]
        if not messages:
            _say("nothing to summarise yet")
            return True
        # store=False and no conversation: the summary request adds nothing to the conversation.
        request = [*messages, {"role": "user", "content": SUMMARY_REQUEST}]
        self._stream("summary", "summary> ", {"input": request, "store": False})
        return True

    def show_history(self) -> bool:
        items = self._items()
        if not items:
            _say("(no messages yet)")
        for item in items:
            if item.type == "message":
                _say(f"{item.role}: {_text_of(item)}")
            else:
                _say(f"[{item.type}]")
        return True

    def start_new(self) -> bool:
        try:
            conversation = self._call(
                lambda: self.client.conversations.create(metadata={"created_by": "aiservice chat"})
            )
        except openai.APIError as exc:
            if not self.conversation_id:  # at start: nothing to chat in
                raise ChatError(error_message(exc)) from None
            raise
        self.conversation_id = conversation.id
        _say(f"conversation: {conversation.id}")
        return True

    def show_help(self) -> bool:
        _say(HELP)
        return True

    def _items(self) -> list[Any]:
        # Iterating the page fetches the following pages as well.
        return self._call(
            lambda: list(self.client.conversations.items.list(self.conversation_id, order="asc"))
        )

    def _stream(self, kind: str, prefix: str, request: dict[str, Any]) -> None:
        exchange = Exchange(kind, self.conversation_id, self.options.model)
        printer = _ReplyPrinter(prefix)

        def attempt() -> None:
            exchange.attempts += 1
            stream = self.client.responses.create(
                model=self.options.model, stream=True, **self._sampling(), **request
            )
            with stream:  # leaving it early closes the connection: the server stops generating
                for event in stream:
                    self._on_event(event, exchange, printer)

        try:
            # Once text is on the screen a retry would print the reply twice: only retry before.
            self._call(attempt, may_retry=lambda: exchange.first_delta is None)
        except KeyboardInterrupt:
            printer.end()
            exchange.status = "interrupted"
            _say("(interrupted)")
        except openai.APIError as exc:
            printer.end()
            exchange.status, exchange.error = "error", error_message(exc)
            _error(exchange.error)
        else:
            printer.end(always=exchange.error is None)
            if exchange.error is not None:
                _error(exchange.error)
        finally:
            self.log.write(exchange)

    def _on_event(self, event: Any, exchange: Exchange, printer: _ReplyPrinter) -> None:
        if event.type == "response.output_text.delta":
            if exchange.first_delta is None:
                exchange.first_delta = time.monotonic()
            printer.write(event.delta)
        elif event.type in (
            "response.created",
            "response.completed",
            "response.incomplete",
            "response.failed",
        ):
            response = event.response
            exchange.response_id = response.id
            exchange.response_model = response.model
            exchange.status = response.status
            if event.type != "response.created" and response.usage is not None:
                exchange.input_tokens = response.usage.input_tokens
                exchange.output_tokens = response.usage.output_tokens
            if event.type == "response.failed":
                exchange.error = response.error.message if response.error else "the reply failed"
        elif event.type == "error":
            exchange.status, exchange.error = "error", event.message

    def _sampling(self) -> dict[str, Any]:
        options = {
            "max_output_tokens": self.options.max_output_tokens,
            "temperature": self.options.temperature,
        }
        return {name: value for name, value in options.items() if value is not None}

    def _call(self, call: Callable[[], T], may_retry: Callable[[], bool] = lambda: True) -> T:
        return call_with_retries(
            call, wait=self._retry_wait, may_retry=may_retry, on_retry=_tell_retry
        )


class _ReplyPrinter:
    """Streams a reply to stdout behind its prefix, printed with the first text."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.started = False

    def write(self, text: str) -> None:
        if not self.started:
            self.started = True
            sys.stdout.write(self.prefix)
        sys.stdout.write(text)
        sys.stdout.flush()

    def end(self, *, always: bool = False) -> None:
        """End the reply's line; with `always`, show the prefix of an empty reply too."""
        if not self.started and always:
            self.write("")
        if self.started:
            sys.stdout.write("\n")
            sys.stdout.flush()


def _text_of(item: Any) -> str:
    return "".join(getattr(part, "text", None) or "" for part in item.content)


def _as_input(item: Any) -> dict[str, str]:
    return {"role": item.role, "content": _text_of(item)}


def _say(text: str) -> None:
    print(text, flush=True)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _tell_retry(error: BaseException, seconds: float) -> None:
    print(f"({error_message(error)}; retrying in {seconds:.1f} s)", file=sys.stderr, flush=True)


def _prompt_lines(prompt: str) -> Iterator[str]:
    """Lines typed at `prompt` until end of input or Ctrl-C. Piped input is echoed after the
    prompt, so that the transcript reads as a conversation."""
    interactive = sys.stdin.isatty()
    if interactive:
        with suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            line = input(prompt)
        except (EOFError, KeyboardInterrupt):
            print(flush=True)
            return
        if not interactive:
            print(line, flush=True)
        yield line


# --- the command ---------------------------------------------------------------------------


def run_chat(
    options: ChatOptions,
    *,
    conversation_id: str | None,
    server_url: str | None,
    api_key: str | None,
    settings: Settings | None,
) -> int:
    """The `aiservice chat` command: returns its exit code. Without `server_url`, aiservice
    runs in this process on `settings`."""
    try:
        with _api_client(server_url, api_key, settings) as client:
            session = ChatSession(client, options)
            session.open(conversation_id)
            session.run(_prompt_lines("you> "))
    except ChatError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:  # e.g. during the embedded server's start
        print(flush=True)
    return 0


@contextmanager
def _api_client(
    server_url: str | None, api_key: str | None, settings: Settings | None
) -> Iterator[OpenAI]:
    if server_url is not None:
        key = api_key or os.environ.get("AISERVICE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ChatError(
                "--server needs an API key: --api-key, AISERVICE_API_KEY or OPENAI_API_KEY", 2
            )
        with _sdk(server_url, key) as client:
            yield client
        return
    if api_key is not None:
        raise ChatError("--api-key is for --server; without it aiservice runs in this process", 2)
    assert settings is not None
    from aiservice.chat.embedded_server import EmbeddedServer, EmbeddedServerError

    print("(starting aiservice in this process…)", file=sys.stderr, flush=True)
    try:
        with EmbeddedServer(settings) as server, _sdk(server.base_url, server.api_key) as client:
            yield client
    except EmbeddedServerError as exc:
        raise ChatError(str(exc)) from None


def _sdk(server_url: str, api_key: str) -> OpenAI:
    base_url = server_url.rstrip("/").removesuffix("/v1") + "/v1"
    # max_retries=0: call_with_retries owns retries, so they are counted and logged once.
    return OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)
