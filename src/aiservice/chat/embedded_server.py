"""The server `aiservice chat` talks to when it is given no `--server`: aiservice itself, in this
process, on a free loopback port, with a master key made for this process alone.

It is the same app `aiservice serve` runs, on the same home, configuration and database, so a
conversation started here can be resumed later here or through a server on that home. The
random master key acts as the owner "admin", as every master key does (and as the embedded
`aiservice.AIService` does); it is set in the settings, so nothing is written to the home.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

import httpx
from pydantic import SecretStr

from aiservice.observability.logging import configure_logging
from aiservice.settings import Settings

if TYPE_CHECKING:
    import uvicorn

SERVER_LOG_NAME = "chat-server.log"


class EmbeddedServerError(Exception):
    """The in-process server did not start; the message says where its log is."""


class EmbeddedServer:
    """aiservice on uvicorn in a daemon thread; `start()` returns once the models are loaded."""

    def __init__(self, settings: Settings, *, ready_timeout_s: float = 120.0, worker: bool = False):
        self._worker = worker  # also run background jobs and batches (`aiservice batch`)
        self.api_key = "sk-chat-" + secrets.token_urlsafe(32)
        self.settings = settings.model_copy(update={"master_key": SecretStr(self.api_key)})
        self.log_path = self.settings.home / SERVER_LOG_NAME
        self.base_url = ""
        self._ready_timeout_s = ready_timeout_s
        self._log_stream: IO[str] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving and wait until `/ready` answers 200."""
        # Imported here: the web stack and the model runtime take seconds to import.
        import uvicorn

        from aiservice.app import create_app

        self.settings.home.mkdir(parents=True, exist_ok=True)
        self._log_stream = _log_to_file(self.settings.log_level, self.log_path)
        app = create_app(self.settings, worker=self._worker)  # chat runs no background jobs
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, server_header=False)
        )
        # Bound here rather than by uvicorn: the port is known before the thread starts.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._server = server
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [listener]},
            name="aiservice-chat-server",
            daemon=True,
        )
        self._thread.start()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._thread is not None
        deadline = time.monotonic() + self._ready_timeout_s
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            while time.monotonic() < deadline:
                if not self._thread.is_alive():
                    raise EmbeddedServerError(
                        f"aiservice could not start in this process; see {self.log_path}"
                    )
                try:
                    if http.get("/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.05)
        raise EmbeddedServerError(
            f"aiservice did not become ready within {self._ready_timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def stop(self) -> None:
        """Stop serving: the lifespan unloads the models and closes the database."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=30)
        if self._log_stream is not None:
            logging.getLogger().handlers[:] = []
            self._log_stream.close()
            self._log_stream = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _log_to_file(level: str, path: Path) -> IO[str]:
    """The server's usual JSON log lines, appended to `path` instead of the terminal."""
    configure_logging(level)
    stream = path.open("a", encoding="utf-8")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    # The chat's own HTTP client would log each request again, beside the server's access line.
    for name in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return stream
