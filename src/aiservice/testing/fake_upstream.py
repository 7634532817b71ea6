"""A fake OpenAI upstream: a real HTTP server that answers deterministically and fails on demand.

    with FakeUpstream() as upstream:  # a free port on 127.0.0.1, served from a background thread
        client = OpenAI(base_url=upstream.base_url, api_key="sk-anything")
        upstream.add_fault(Fault(status=429, retry_after=1, times=2))

From the command line: `python -m aiservice.testing.fake_upstream --port 8100`, its faults then
queued over HTTP (`POST /_fake/faults`). See docs/testing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import uvicorn

from aiservice.testing.fake_app import DEFAULT_MODELS, Behaviour, FakeUpstreamApp
from aiservice.testing.faults import Fault, PendingFault
from aiservice.testing.recording import RecordedRequest, RequestLog
from aiservice.testing.wire import ReplySource

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]

_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0
_BACKLOG = 2048


class _Server(uvicorn.Server):
    """uvicorn, telling the app when it starts and as soon as it begins to stop (a signal
    included), so that stalled answers end instead of holding the shutdown up."""

    def __init__(self, config: uvicorn.Config, app: FakeUpstreamApp) -> None:
        super().__init__(config)
        self.fake_app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.fake_app.serving()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.fake_app.stopping()
        await super().shutdown(sockets)


class FakeUpstream:
    """An OpenAI-compatible server for tests and benchmarks; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: ReplySource = None,
        models: Sequence[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        record_requests: bool = True,
        ignores: Sequence[str] = (),
    ) -> None:
        self.host = host
        self._port = port  # 0 until the first start picks a free one, kept for restarts
        self._requests = RequestLog(keep_records=record_requests)
        behaviour = Behaviour(reply, list(models), api_key, ignores=frozenset(ignores))
        self.app = FakeUpstreamApp(behaviour, self._requests)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # Where it listens.

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """http://HOST:PORT, for the `/_fake/` control routes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """http://HOST:PORT/v1: what an OpenAI client's base_url is set to."""
        return f"{self.url}/v1"

    # What it answers.

    @property
    def reply(self) -> ReplySource:
        """Fixed reply text, a function of the request's JSON body, or None for the default."""
        return self.app.behaviour.reply

    @reply.setter
    def reply(self, reply: ReplySource) -> None:
        self.app.behaviour.reply = reply

    @property
    def models(self) -> list[str]:
        return self.app.behaviour.models

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; the first queued fault that matches a request spoils it."""
        self.app.faults.add(fault)

    def clear_faults(self) -> None:
        self.app.faults.clear()

    @property
    def faults(self) -> list[PendingFault]:
        """The faults still queued, each with how many more requests it will spoil."""
        return self.app.faults.pending()

    # What it received.

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request to the OpenAI routes so far, oldest first (a copy)."""
        return self._requests.records()

    @property
    def request_counts(self) -> dict[str, int]:
        """How many requests each path received (kept even with record_requests=False)."""
        return self._requests.counts()

    def request_count(self, path: str) -> int:
        """Requests received on `path`: "/v1/chat/completions" or "/chat/completions"."""
        path = "/" + path.strip("/")
        return self.request_counts.get(path if path.startswith("/v1/") else "/v1" + path, 0)

    def reset(self) -> None:
        """Forget the requests received, the files and batches, and drop every queued fault."""
        self._requests.clear()
        self.app.faults.clear()
        self.app.files.clear()
        self.app.batches.clear()

    # Running it.

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Serve from a background thread; returns once it accepts connections. After a
        stop, it starts again on the same port."""
        if self._thread is not None:
            raise RuntimeError("the fake upstream is already running")
        server, listening = self._prepare()
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listening]}, name=f"fake-upstream-{self.port}"
        )
        thread.daemon = True  # never keeps a test process alive; stop() joins it
        thread.start()
        self._thread = thread
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fake upstream did not start on {self.url}")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Stop serving, ending stalled answers by dropping their connections. Idempotent."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def serve_forever(self, on_listening: Callable[[FakeUpstream], None] | None = None) -> None:
        """Serve from this thread until SIGINT or SIGTERM (the command line's way);
        `on_listening` is called once the port is bound."""
        server, listening = self._prepare()
        if on_listening is not None:
            on_listening(self)
        try:
            server.run(sockets=[listening])
        finally:
            listening.close()
            self._server = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare(self) -> tuple[_Server, socket.socket]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        # A restart may bind the port its previous run left in TIME_WAIT.
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listening.bind((self.host, self._port))
        except OSError:
            listening.close()
            raise
        self._port = listening.getsockname()[1]
        # Listening now, connections made before uvicorn accepts wait in the backlog.
        listening.listen(_BACKLOG)
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            lifespan="off",
            access_log=False,
            log_config=None,  # leave the host process's logging alone
            log_level=None,
            backlog=_BACKLOG,
            timeout_graceful_shutdown=1,
        )
        self._server, self._socket = _Server(config, self.app), listening
        return self._server, listening


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m aiservice.testing.fake_upstream`: serve a fake upstream until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m aiservice.testing.fake_upstream",
        description="Serve a fake OpenAI upstream until interrupted; see docs/testing.md.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--reply", help="fixed reply text (default: 'Fake reply to: <prompt>')")
    parser.add_argument("--api-key", help="accept only this Bearer key (default: any)")
    parser.add_argument(
        "--model", action="append", dest="models", help="a model id /v1/models lists (repeatable)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="count requests without keeping them"
    )
    args = parser.parse_args(argv)
    upstream = FakeUpstream(
        host=args.host,
        port=args.port,
        reply=args.reply,
        models=args.models or DEFAULT_MODELS,
        api_key=args.api_key,
        record_requests=not args.no_record,
    )

    def announce(running: FakeUpstream) -> None:
        print(f"fake upstream on {running.base_url} (Ctrl-C stops it)", flush=True)

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it stopped on
        upstream.serve_forever(announce)


if __name__ == "__main__":
    main()
